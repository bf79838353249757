/**
 * Safety: inspects every user message before it reaches the model (and, later, text before it is logged or
 * stored). The foundation ships a pass-through filter; the detectors (PII redaction, prompt-injection and
 * jailbreak scoring) arrive as a new implementation of the same interface.
 */
import { Effect, Layer, Schema } from "effect"
import { ClientError } from "./Domain/Errors.js"

export type SafetyAction = "allow" | "flag" | "block"

export interface PiiSpan {
  readonly type: string
  readonly start: number
  readonly end: number
}

export interface SafetyVerdict {
  readonly action: SafetyAction
  /** Category name → score in [0, 1]. */
  readonly categories: Readonly<Record<string, number>>
  readonly pii: ReadonlyArray<PiiSpan>
  /** The text with PII replaced by typed placeholders. */
  readonly redacted: string
}

/** A message the policy refuses: it never reaches the model. */
export class ContentBlocked extends ClientError<ContentBlocked>()(
  "ContentBlocked",
  400,
  "The safety filter blocked the message",
  { categories: Schema.Array(Schema.String) }
) {}

export const allow = (text: string): SafetyVerdict => ({ action: "allow", categories: {}, pii: [], redacted: text })

export class Safety extends Effect.Service<Safety>()("nexxi/Safety", {
  succeed: {
    /** Pure and fast: no I/O, so it can run on every message and every log line. */
    inspect: (text: string): Effect.Effect<SafetyVerdict> => Effect.succeed(allow(text))
  }
}) {
  /** A filter with a fixed decision, for tests of the pipeline around it. */
  static readonly Test = (decide: (text: string) => SafetyVerdict) =>
    Layer.succeed(Safety, Safety.make({ inspect: (text) => Effect.sync(() => decide(text)) }))
}
