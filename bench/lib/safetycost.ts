/**
 * What the safety filter costs per KB of user message: the inspection Nexxi runs on every message (PII, secrets,
 * normalisation, decoding, injection scores, with the default system prompt protected) and the redaction of the
 * stored transcript, timed in this process on ordinary prose of several sizes.
 */
import { defaultInspectOptions, makeInspector } from "../../src/Safety/Inspect.js"
import { protectedContent } from "../../src/Safety/Protected.js"
import { findPii, redactSpans } from "../../src/Safety/Redact.js"
import { ascending, quantile } from "./stats.js"

const SENTENCES = [
  "Could you help me plan a three-day walking trip along the coast in early October?",
  "I would like to visit two lighthouses, a fishing village and a small museum about shipwrecks.",
  "We are four adults, one of us walks slowly, and we prefer quiet guest houses to large hotels.",
  "Please suggest a route of about twelve kilometres a day, with places to eat lunch on the way.",
  "What should we pack if the weather turns, and which trains run back to the city on Sunday evening?",
  "Last year we spent 240 euros a night in total, so a similar budget would be fine for us.",
  "My colleague recommended the cliff path after the harbour, but she went there in summer."
]

/** Deterministic prose of about `bytes` bytes. */
export const prose = (bytes: number): string => {
  let text = ""
  for (let index = 0; text.length < bytes; index++) text += SENTENCES[(index * 3) % SENTENCES.length] + " "
  return text.slice(0, bytes).trimEnd()
}

export interface SafetySize {
  readonly size_kb: number
  readonly inspect_p50_ms: number
  readonly inspect_p99_ms: number
  readonly redact_p50_ms: number
  readonly inspect_per_kb_ms: number
}

export const runSafetyCost = (systemPrompt: string, sizesKb: ReadonlyArray<number>, budgetMs: number) => {
  const inspect = makeInspector({ ...defaultInspectOptions, protectedContent: protectedContent(systemPrompt) })
  const redact = (text: string) => redactSpans(text, findPii(text, defaultInspectOptions.pii))
  const time = (run: () => void, iterations: number) => {
    const samples: Array<number> = []
    for (let index = 0; index < iterations; index++) {
      const start = performance.now()
      run()
      samples.push(performance.now() - start)
    }
    return ascending(samples)
  }
  return sizesKb.map((sizeKb): SafetySize => {
    const text = prose(sizeKb * 1024)
    // Warm-up (JIT), then as many runs as fit the budget.
    const warm = time(() => inspect(text), 20)
    const iterations = Math.max(20, Math.min(2_000, Math.floor(budgetMs / Math.max(0.01, quantile(warm, 0.5)))))
    const inspected = time(() => inspect(text), iterations)
    const redacted = time(() => redact(text), Math.max(20, Math.floor(iterations / 2)))
    const p50 = quantile(inspected, 0.5)
    return {
      size_kb: sizeKb,
      inspect_p50_ms: p50,
      inspect_p99_ms: quantile(inspected, 0.99),
      redact_p50_ms: quantile(redacted, 0.5),
      inspect_per_kb_ms: p50 / sizeKb
    }
  })
}
