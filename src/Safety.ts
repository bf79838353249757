/**
 * Safety: inspects every user message before it reaches the model, and takes personal data and secrets out of text
 * before it leaves the process — log lines always, stored transcripts by default, prompts and replies on request.
 *
 * The detectors are pure functions under `Safety/` (Normalize, Decode, Injection, Protected, Pii, Secrets, Redact,
 * Redactor, Inspect); this file is the policy around them: the configuration, what `SAFETY_MODE` does to a verdict,
 * metrics and log lines. Nothing here does I/O, so `inspect` can run on every message.
 */
import { Effect, Layer, Metric, MetricLabel, Schema } from "effect"
import { AppConfig, StartupError } from "./AppConfig.js"
import { ClientError } from "./Domain/Errors.js"
import { defaultDecodeBudget } from "./Safety/Decode.js"
import {
  defaultThresholds,
  type InspectOptions,
  makeInspector,
  type SafetyVerdict,
  type Thresholds
} from "./Safety/Inspect.js"
import { defaultPhoneRegions, type PiiType, placeholders } from "./Safety/Pii.js"
import { protectedContent } from "./Safety/Protected.js"
import { allPiiTypes, findPii, type PiiOptions, redactSpans } from "./Safety/Redact.js"
import { makeStreamRedactor, type StreamRedactor } from "./Safety/Redactor.js"
import { getCountries, type CountryCode } from "libphonenumber-js"

export type { SafetyAction, SafetyVerdict } from "./Safety/Inspect.js"
export type { PiiSpan, PiiType } from "./Safety/Pii.js"
export type { StreamRedactor } from "./Safety/Redactor.js"

/** A message the policy refuses: it never reaches the model. */
export class ContentBlocked extends ClientError<ContentBlocked>()(
  "ContentBlocked",
  400,
  "The safety filter blocked the message",
  { categories: Schema.Array(Schema.String) }
) {}

export const allow = (text: string): SafetyVerdict => ({ action: "allow", categories: {}, pii: [], redacted: text })

/** `enforce` blocks; `monitor` only flags what it would block (for a trial period); `off` only redacts. */
export type SafetyMode = "enforce" | "monitor" | "off"

export interface SafetyPolicy {
  readonly mode: SafetyMode
  readonly thresholds: Thresholds
  /** PII_REDACT_STORAGE: transcripts are stored redacted. */
  readonly redactStorage: boolean
  /** PII_REDACT_PROMPT: the model sees placeholders instead of personal data. */
  readonly redactPrompt: boolean
  /** SAFETY_OUTPUT_REDACT: replies reach the client redacted. */
  readonly redactOutput: boolean
}

export const defaultPolicy: SafetyPolicy = {
  mode: "enforce",
  thresholds: defaultThresholds,
  redactStorage: true,
  redactPrompt: false,
  redactOutput: false
}

// --- Metrics ---------------------------------------------------------------------------------------------------

const verdictsTotal = Metric.counter("nexxi_safety_verdicts_total", {
  description: "User messages inspected by the safety filter, by action (allow, flag, block) and top category (none).",
  incremental: true
})

const piiTotal = Metric.counter("nexxi_safety_pii_total", {
  description: "Personal data and secrets found in user messages, by type (email, phone, secret...).",
  incremental: true
})

/** The highest-scoring category, so that the counter's series add up to the number of messages. */
const topCategory = (verdict: SafetyVerdict): string =>
  Object.entries(verdict.categories).reduce<[string, number]>(
    (top, entry) => (entry[1] > top[1] ? entry : top),
    ["none", -1]
  )[0]

const recordVerdict = (verdict: SafetyVerdict): Effect.Effect<void> =>
  Effect.suspend(() => {
    const counts = new Map<PiiType, number>()
    for (const span of verdict.pii) counts.set(span.type, (counts.get(span.type) ?? 0) + 1)
    return Effect.zipRight(
      Metric.increment(
        Metric.taggedWithLabels(verdictsTotal, [
          MetricLabel.make("action", verdict.action),
          MetricLabel.make("category", topCategory(verdict))
        ])
      ),
      Effect.forEach(
        counts,
        ([type, count]) =>
          Metric.incrementBy(Metric.taggedWithLabels(piiTotal, [MetricLabel.make("type", type)]), count),
        { discard: true }
      )
    )
  })

/** Flagged and blocked messages are logged with their scores (never their text). */
const logVerdict = (verdict: SafetyVerdict): Effect.Effect<void> => {
  if (verdict.action === "allow") return Effect.void
  const scores = Object.entries(verdict.categories)
    .map(([category, score]) => `${category}:${score}`)
    .join(",")
  const log = verdict.action === "block" ? Effect.logInfo : Effect.logWarning
  return log(`Safety filter: message ${verdict.action === "block" ? "blocked" : "flagged"}`).pipe(
    Effect.annotateLogs({ safety_action: verdict.action, safety_categories: scores })
  )
}

// --- The service -----------------------------------------------------------------------------------------------

const passThrough: StreamRedactor = { push: (delta) => delta, flush: () => "" }

/** The service's methods for a policy and the pure inspector and redaction it uses. */
const makeSafety = (policy: SafetyPolicy, inspectText: (text: string) => SafetyVerdict, piiOptions: PiiOptions) => {
  const redactNow = (text: string) => redactSpans(text, findPii(text, piiOptions))
  const applyMode = (verdict: SafetyVerdict): SafetyVerdict =>
    policy.mode === "monitor" && verdict.action === "block" ? { ...verdict, action: "flag" } : verdict
  return {
    policy,
    /** The verdict on a user message. Pure and fast: no I/O, so it can run on every message. */
    inspect: (text: string): Effect.Effect<SafetyVerdict> =>
      Effect.sync(() => applyMode(inspectText(text))).pipe(
        Effect.tap((verdict) => Effect.zipRight(recordVerdict(verdict), logVerdict(verdict))),
        Effect.withSpan("Safety.inspect")
      ),
    /** `text` with personal data and secrets replaced by typed placeholders (`[EMAIL]`, `[SECRET]`...). */
    redact: (text: string): Effect.Effect<string> => Effect.sync(() => redactNow(text)),
    /** What a transcript stores: redacted unless PII_REDACT_STORAGE=false. */
    redactForStorage: (text: string): Effect.Effect<string> =>
      policy.redactStorage ? Effect.sync(() => redactNow(text)) : Effect.succeed(text),
    /** What the model sees of a message: redacted only with PII_REDACT_PROMPT=true. */
    redactForPrompt: (text: string): Effect.Effect<string> =>
      policy.redactPrompt ? Effect.sync(() => redactNow(text)) : Effect.succeed(text),
    /**
     * A redactor for one reply streamed to the client (one per reply: it holds back text between pieces). Passes text
     * through unchanged unless SAFETY_OUTPUT_REDACT=true.
     */
    outputRedactor: Effect.sync(() => (policy.redactOutput ? makeStreamRedactor(piiOptions) : passThrough))
  } as const
}

const knownRegions: ReadonlySet<string> = new Set(getCountries())

/** The PII options a configuration asks for; unknown type or region names stop start-up with one line. */
const piiOptionsFrom = (types: ReadonlyArray<string>, regions: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const unknownType = types.find((type) => !allPiiTypes.has(type as PiiType))
    if (unknownType !== undefined) {
      return yield* new StartupError({
        message: `PII_TYPES: unknown type ${unknownType} (known: ${Object.keys(placeholders).join(", ")})`
      })
    }
    const upper = regions.map((region) => region.toUpperCase())
    const unknownRegion = upper.find((region) => !knownRegions.has(region))
    if (unknownRegion !== undefined) {
      return yield* new StartupError({
        message: `PII_PHONE_REGIONS: ${unknownRegion} is not an ISO 3166 country code libphonenumber knows`
      })
    }
    const options: PiiOptions = {
      types: types.length === 0 ? allPiiTypes : new Set(types as ReadonlyArray<PiiType>),
      regions: upper.length === 0 ? defaultPhoneRegions : (upper as ReadonlyArray<CountryCode>)
    }
    return options
  })

export class Safety extends Effect.Service<Safety>()("nexxi/Safety", {
  effect: Effect.gen(function* () {
    const config = yield* AppConfig
    const policy: SafetyPolicy = {
      mode: config.safetyMode,
      thresholds: {
        block: config.safetyBlockThreshold,
        flag: Math.min(config.safetyFlagThreshold, config.safetyBlockThreshold)
      },
      redactStorage: config.piiRedactStorage,
      redactPrompt: config.piiRedactPrompt,
      redactOutput: config.safetyOutputRedact
    }
    const pii = yield* piiOptionsFrom(config.piiTypes, config.piiPhoneRegions)
    const options: InspectOptions = {
      thresholds: policy.thresholds,
      pii,
      decode: defaultDecodeBudget,
      // What the deployment's own system prompt protects: its secrets, private data and forbidden topics.
      protectedContent: protectedContent(config.systemPrompt)
    }
    const inspectText = makeInspector(options)
    const redactOnly = (text: string): SafetyVerdict => {
      const spans = findPii(text, pii)
      return { action: "allow", categories: {}, pii: spans, redacted: redactSpans(text, spans) }
    }
    return makeSafety(policy, policy.mode === "off" ? redactOnly : inspectText, pii)
  })
}) {
  /** A filter with a fixed decision, for tests of the pipeline around it (redaction as configured by `policy`). */
  static readonly Test = (decide: (text: string) => SafetyVerdict, policy: Partial<SafetyPolicy> = {}) =>
    Layer.succeed(
      Safety,
      Safety.make(
        makeSafety({ ...defaultPolicy, ...policy }, decide, { types: allPiiTypes, regions: defaultPhoneRegions })
      )
    )
}
