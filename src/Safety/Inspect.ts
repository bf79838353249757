/**
 * One verdict for one message: personal data and secrets found and redacted, injection and jailbreak categories
 * scored on the folded text, its de-obfuscated form and its decoded payloads, and an action from the thresholds.
 * Pure and synchronous, so the service, the log redaction and the benchmark share it.
 */
import { foldedAnchors } from "./Anchors.js"
import { type DecodeBudget, decodePayloads, defaultDecodeBudget } from "./Decode.js"
import { embeddedInstruction } from "./Embedded.js"
import { combine, type InjectionCategory, matchSignals, scoreSignals, type Signal } from "./Injection.js"
import { countSuspiciousInvisible, deobfuscate, fold } from "./Normalize.js"
import type { PiiSpan } from "./Pii.js"
import { nothingProtected, probeProtected, type ProtectedContent } from "./Protected.js"
import { defaultPiiOptions, findPii, type PiiOptions, redactSpans } from "./Redact.js"

export type SafetyAction = "allow" | "flag" | "block"

export type SafetyCategory = InjectionCategory | "protected_content"

export interface SafetyVerdict {
  readonly action: SafetyAction
  /** Category name → score in [0, 1], for the categories that scored at least `reportAt`. */
  readonly categories: Readonly<Record<string, number>>
  readonly pii: ReadonlyArray<PiiSpan>
  /** The text with PII replaced by typed placeholders. */
  readonly redacted: string
}

/** Compared with a message's risk: its category scores combined as independent evidence (see `riskOf`). */
export interface Thresholds {
  /** A message this risky is counted and logged; it goes through. */
  readonly flag: number
  /** A message this risky is stopped. */
  readonly block: number
}

/**
 * One ambiguous hint (a weight of 0.5 or less: "jailbreak", "god mode", "the password") is flagged; one specific
 * signal (0.6 and up: "ignore all previous instructions", "<|im_start|>") or two hints together are blocked.
 */
export const defaultThresholds: Thresholds = { flag: 0.4, block: 0.6 }

export interface InspectOptions {
  readonly thresholds: Thresholds
  readonly pii: PiiOptions
  readonly decode: DecodeBudget
  /** What the system prompt protects (see Protected.ts). */
  readonly protectedContent: ProtectedContent
}

export const defaultInspectOptions: InspectOptions = {
  thresholds: defaultThresholds,
  pii: defaultPiiOptions,
  decode: defaultDecodeBudget,
  protectedContent: nothingProtected
}

/** Categories below this are noise: not reported, so that a blocked message lists only the reasons that count. */
const reportAt = 0.25

/** Invisible characters inside ordinary text are a disguise once there are a few of them. */
const INVISIBLE_DISGUISE = 3

const distinct = (found: Iterable<Signal>): Array<Signal> => [...new Map([...found].map((s) => [s.id, s])).values()]

/** Category scores of a message (no PII work): the part of `inspect` that decides the action. */
export const scoreMessage = (
  text: string,
  options: Pick<InspectOptions, "decode" | "protectedContent"> = defaultInspectOptions
): Partial<Record<SafetyCategory, number>> => {
  const folded = fold(text)
  // The folded text is scanned once for the anchors of every detector that reads it.
  const found = foldedAnchors.scan(folded)
  const views = [folded]
  const deobfuscated = deobfuscate(folded)
  if (deobfuscated !== undefined) views.push(deobfuscated)
  const payloads = decodePayloads(text, folded, options.decode, found).map((payload) => ({
    ...payload,
    text: fold(payload.text)
  }))

  const plain = distinct([
    ...matchSignals(folded, found),
    ...(deobfuscated === undefined ? [] : matchSignals(deobfuscated))
  ])
  const decoded = distinct(payloads.flatMap((payload) => matchSignals(payload.text)))
  const extra: Array<{ category: InjectionCategory; weight: number }> = []
  if (countSuspiciousInvisible(text) >= INVISIBLE_DISGUISE) extra.push({ category: "payload_smuggling", weight: 0.4 })
  if (payloads.some((payload) => payload.encoding === "unicode_tags")) {
    extra.push({ category: "payload_smuggling", weight: 0.8 })
  }
  // An instruction to the model planted inside data it is asked to process (see Embedded.ts).
  const embedded = embeddedInstruction(folded, found)
  if (embedded > 0) extra.push({ category: "instruction_override", weight: embedded })
  const scores: Partial<Record<SafetyCategory, number>> = { ...scoreSignals(plain, decoded, extra) }

  const probes = probeProtected(options.protectedContent, [...views, ...payloads.map((payload) => payload.text)])
  if (probes.length > 0) {
    const strongest = new Map<string, number>()
    for (const probe of probes) strongest.set(probe.reason, Math.max(strongest.get(probe.reason) ?? 0, probe.weight))
    scores.protected_content = combine(strongest.values())
  }
  return scores
}

/** The categories are independent evidence that the message is an attack: their scores combine like signals do. */
export const riskOf = (scores: Partial<Record<string, number>>): number =>
  combine(Object.values(scores).map((score) => score ?? 0))

export const actionFor = (scores: Partial<Record<string, number>>, thresholds: Thresholds): SafetyAction => {
  const risk = riskOf(scores)
  return risk >= thresholds.block ? "block" : risk >= thresholds.flag ? "flag" : "allow"
}

/** The inspector for a configuration: text in, verdict out. */
export const makeInspector =
  (options: InspectOptions = defaultInspectOptions) =>
  (text: string): SafetyVerdict => {
    const pii = findPii(text, options.pii)
    const scores = scoreMessage(text, options)
    const action = actionFor(scores, options.thresholds)
    const ranked = Object.entries(scores)
      .filter((entry): entry is [string, number] => entry[1] !== undefined)
      .sort((a, b) => b[1] - a[1])
    const categories: Record<string, number> = {}
    // A flagged or blocked message always names at least its strongest reason.
    for (const [index, [category, score]] of ranked.entries()) {
      if (score >= reportAt || (index === 0 && action !== "allow")) categories[category] = Math.round(score * 100) / 100
    }
    return { action, categories, pii, redacted: redactSpans(text, pii) }
  }
