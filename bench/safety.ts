/**
 * `npm run bench:safety`: the safety filter measured as a classifier on public labelled data, and timed.
 *
 * Reads `../shared/evaldata/` next to the repository (prompts_dev.jsonl, pii_dev.jsonl; see its README) and prints:
 * - prompts: per source and label, how many were blocked and flagged; block recall on injection + jailbreak, and the
 *   block and flag rates on benign text. CyberSecEval rows are scored twice: with their own `meta.system_prompt`
 *   (as a deployment with that system prompt would see them) and with none. Rows are split by a hash of their text
 *   into a tuning part (70%) and a held-out part (30%): patterns were written looking at the tuning part only, and
 *   the held-out part shows whether they generalise.
 * - PII: precision and recall per type by span overlap, and how many rows holding only types we do not redact
 *   (names, addresses...) were redacted anyway.
 * - time per message (median, p99) and per KB; for 4 KB messages the median, the raw p99 over every single run
 *   (garbage-collection pauses included) and the time per KB; and a 100 KB adversarial input made of near-misses of
 *   every pattern. The targets: a 4 KB message under 1 ms at p99, the 100 KB adversarial input under 50 ms.
 *
 * `--misses` lists the tuning part's misclassified rows (truncated), for whoever improves the patterns.
 */
import { existsSync, readFileSync } from "node:fs"
import { availableParallelism, loadavg } from "node:os"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { signals } from "../src/Safety/Injection.js"
import { defaultInspectOptions, makeInspector, type SafetyVerdict } from "../src/Safety/Inspect.js"
import type { PiiSpan, PiiType } from "../src/Safety/Pii.js"
import { protectedContent } from "../src/Safety/Protected.js"
import { findPii } from "../src/Safety/Redact.js"
import { secretRules } from "../src/Safety/Secrets.js"

const dataDir = resolve(dirname(fileURLToPath(import.meta.url)), "../../shared/evaldata")
const showMisses = process.argv.includes("--misses")

interface PromptRow {
  readonly text: string
  readonly label: "benign" | "injection" | "jailbreak"
  readonly source: string
  readonly meta: { readonly system_prompt?: string }
}

interface PiiEntity {
  readonly type: string
  readonly start: number
  readonly end: number
  readonly mapped: string | null
}

interface PiiRow {
  readonly text: string
  readonly entities: ReadonlyArray<PiiEntity>
  readonly source: string
}

const readJsonLines = <A>(file: string): Array<A> =>
  readFileSync(resolve(dataDir, file), "utf8")
    .split("\n")
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line) as A)

/** FNV-1a: a stable split that does not depend on the order of the file. */
const hash = (text: string) => {
  let value = 0x811c9dc5
  for (let index = 0; index < text.length; index++) value = Math.imul(value ^ text.charCodeAt(index), 0x01000193)
  return value >>> 0
}
const isHeldOut = (text: string) => hash(text) % 10 < 3

const percent = (part: number, whole: number) =>
  whole === 0 ? "   -  " : `${((100 * part) / whole).toFixed(1)}%`.padStart(6)
const pad = (text: string | number, width: number) => String(text).padEnd(width)
const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0
const shortSource = (source: string) => source.split(":")[0]!.split("/")[1] ?? source
const snippet = (text: string) => JSON.stringify(text.slice(0, 160))

// --- Prompts ---------------------------------------------------------------------------------------------------

const inspectWithout = makeInspector(defaultInspectOptions)
const inspectorsBySystemPrompt = new Map<string, (text: string) => SafetyVerdict>()
const inspectWith = (systemPrompt: string) => {
  let inspect = inspectorsBySystemPrompt.get(systemPrompt)
  if (inspect === undefined) {
    inspect = makeInspector({ ...defaultInspectOptions, protectedContent: protectedContent(systemPrompt) })
    inspectorsBySystemPrompt.set(systemPrompt, inspect)
  }
  return inspect
}

interface Tally {
  total: number
  blocked: number
  flagged: number
}
const emptyTally = (): Tally => ({ total: 0, blocked: 0, flagged: 0 })
const count = (tally: Tally, verdict: SafetyVerdict) => {
  tally.total++
  if (verdict.action === "block") tally.blocked++
  if (verdict.action === "flag") tally.flagged++
}

const benchPrompts = (rows: ReadonlyArray<PromptRow>) => {
  console.log(`\n== Prompts (${rows.length} rows) ==\n`)
  type Mode = "with system prompt" | "without system prompt"
  const byGroup = new Map<string, Tally>()
  const headline = new Map<string, Tally>()
  const misses: Array<string> = []
  const tally = (key: string, map: Map<string, Tally>) => {
    const found = map.get(key) ?? emptyTally()
    map.set(key, found)
    return found
  }
  for (const row of rows) {
    const split = isHeldOut(row.text) ? "held-out" : "tuning"
    const systemPrompt = row.meta.system_prompt
    const modes: ReadonlyArray<[Mode, SafetyVerdict]> =
      systemPrompt === undefined
        ? [
            ["with system prompt", inspectWithout(row.text)],
            ["without system prompt", inspectWithout(row.text)]
          ]
        : [
            ["with system prompt", inspectWith(systemPrompt)(row.text)],
            ["without system prompt", inspectWithout(row.text)]
          ]
    for (const [mode, verdict] of modes) {
      const kind = row.label === "benign" ? "benign" : "attack"
      for (const part of [split, "all"]) count(tally(`${mode}|${kind}|${part}`, headline), verdict)
      if (systemPrompt !== undefined || mode === "with system prompt") {
        count(tally(`${mode}|${shortSource(row.source)}|${row.label}`, byGroup), verdict)
      }
      const wrong = kind === "benign" ? verdict.action === "block" : verdict.action !== "block"
      if (showMisses && wrong && split === "tuning" && mode === "with system prompt") {
        const scores = JSON.stringify(verdict.categories)
        misses.push(`${row.label.padEnd(9)} ${verdict.action.padEnd(5)} ${scores} ${snippet(row.text)}`)
      }
    }
  }

  console.log("Per source and label (blocked / flagged; CyberSecEval rows also without their system prompt):")
  console.log(`  ${pad("mode", 22)} ${pad("source", 18)} ${pad("label", 10)} ${pad("rows", 6)} blocked        flagged`)
  for (const [key, value] of [...byGroup].sort()) {
    const [mode, source, label] = key.split("|") as [string, string, string]
    if (mode === "without system prompt" && source !== "PurpleLlama") continue
    console.log(
      `  ${pad(mode, 22)} ${pad(source, 18)} ${pad(label, 10)} ${pad(value.total, 6)} ` +
        `${pad(value.blocked, 5)} ${percent(value.blocked, value.total)}   ${pad(value.flagged, 5)} ${percent(value.flagged, value.total)}`
    )
  }
  console.log("\nInjection + jailbreak vs benign (block = positive):")
  console.log(
    `  ${pad("mode", 22)} ${pad("split", 9)} recall  (blocked/attacks)  flagged   benign blocked (FPR)  flagged   precision`
  )
  for (const mode of ["with system prompt", "without system prompt"]) {
    for (const part of ["tuning", "held-out", "all"]) {
      const attack = headline.get(`${mode}|attack|${part}`) ?? emptyTally()
      const benign = headline.get(`${mode}|benign|${part}`) ?? emptyTally()
      const precision = attack.blocked / Math.max(1, attack.blocked + benign.blocked)
      console.log(
        `  ${pad(mode, 22)} ${pad(part, 9)} ${percent(attack.blocked, attack.total)}  (${attack.blocked}/${attack.total})`.padEnd(
          60
        ) +
          `${percent(attack.flagged, attack.total)}   ${percent(benign.blocked, benign.total)} (${benign.blocked}/${benign.total})`.padEnd(
            33
          ) +
          `${percent(benign.flagged, benign.total)}   ${(100 * precision).toFixed(1)}%`
      )
    }
  }
  if (showMisses) {
    console.log(`\nMisclassified rows of the tuning part (${misses.length}):`)
    for (const line of misses) console.log("  " + line)
  }
}

// --- PII -------------------------------------------------------------------------------------------------------

const goldType = (mapped: string): PiiType | undefined =>
  mapped === "api_key_or_secret"
    ? "secret"
    : (["email", "phone", "us_ssn", "credit_card", "iban", "ip_address"] as const).find((type) => type === mapped)

const overlaps = (a: { start: number; end: number }, b: { start: number; end: number }) =>
  a.start < b.end && b.start < a.end

const benchPii = (rows: ReadonlyArray<PiiRow>) => {
  console.log(`\n== PII (${rows.length} rows; spans scored by overlap) ==\n`)
  const stats = new Map<PiiType, { predicted: number; correct: number; gold: number; found: number }>()
  const stat = (type: PiiType) => {
    const found = stats.get(type) ?? { predicted: 0, correct: 0, gold: 0, found: 0 }
    stats.set(type, found)
    return found
  }
  let unmappedOnly = 0
  let unmappedRedacted = 0
  const errors: Array<string> = []
  for (const row of rows) {
    const predicted = findPii(row.text)
    const gold = row.entities.flatMap((entity) => {
      const type = entity.mapped === null ? undefined : goldType(entity.mapped)
      return type === undefined ? [] : [{ ...entity, type }]
    })
    for (const span of predicted) {
      const entry = stat(span.type)
      entry.predicted++
      if (gold.some((entity) => entity.type === span.type && overlaps(entity, span))) entry.correct++
      else if (showMisses)
        errors.push(`FP ${span.type}: ${snippet(row.text.slice(Math.max(0, span.start - 30), span.end + 10))}`)
    }
    for (const entity of gold) {
      const entry = stat(entity.type)
      entry.gold++
      if (predicted.some((span: PiiSpan) => span.type === entity.type && overlaps(entity, span))) entry.found++
      else if (showMisses)
        errors.push(`FN ${entity.type}: ${snippet(row.text.slice(Math.max(0, entity.start - 30), entity.end + 10))}`)
    }
    if (row.entities.length > 0 && row.entities.every((entity) => entity.mapped === null)) {
      unmappedOnly++
      if (predicted.length > 0) unmappedRedacted++
    }
  }
  console.log(`  ${pad("type", 12)} ${pad("gold", 6)} ${pad("found", 6)} recall   ${pad("predicted", 10)} precision`)
  const totals = { predicted: 0, correct: 0, gold: 0, found: 0 }
  for (const [type, entry] of [...stats].sort()) {
    if (type !== "secret") {
      totals.predicted += entry.predicted
      totals.correct += entry.correct
      totals.gold += entry.gold
      totals.found += entry.found
    }
    console.log(
      `  ${pad(type, 12)} ${pad(entry.gold, 6)} ${pad(entry.found, 6)} ${percent(entry.found, entry.gold)}   ` +
        `${pad(entry.predicted, 10)} ${percent(entry.correct, entry.predicted)}`
    )
  }
  console.log(
    `  ${pad("mapped (no secrets)", 19)} recall ${percent(totals.found, totals.gold)}, precision ${percent(totals.correct, totals.predicted)}`
  )
  console.log(
    `  rows with only unmapped entities (names, addresses...): ${unmappedOnly}, redacted anyway: ${unmappedRedacted} ` +
      `(${percent(unmappedRedacted, unmappedOnly).trim()})`
  )
  if (showMisses) for (const line of errors) console.log("  " + line)
}

// --- Time ------------------------------------------------------------------------------------------------------

/** 100 KB of near-misses: every pattern's example without its last character, and runs that tempt each scanner. */
const adversarialInput = (): string => {
  const nearMisses = [
    ...signals.map((candidate) => candidate.example.slice(0, -1)),
    ...secretRules.map((rule) => rule.example.slice(0, -1)),
    "a".repeat(300),
    "1".repeat(300),
    "a@".repeat(100),
    "a.".repeat(100),
    "+1 (".repeat(50),
    "12 34 ".repeat(50),
    "4111 1111 1111 111",
    "GB82 WEST 1234 5698 7654 3",
    "192.168.1.",
    "fe80::1:".repeat(20),
    "-----BEGIN PRIVATE KEY-----",
    "https://user:" + "p".repeat(200),
    "QUFB".repeat(100) + "!",
    "01000001 ".repeat(40),
    "\\x41".repeat(60),
    "%41".repeat(60),
    "i g n o r e ".repeat(20),
    "1gn0r3 ".repeat(20),
    "ignore ".repeat(40),
    "<!-- ".repeat(40),
    "password = ".repeat(20),
    "\u200b".repeat(50)
  ]
  let text = ""
  for (let index = 0; text.length < 100 * 1024; index++) text += nearMisses[index % nearMisses.length] + "\n"
  return text.slice(0, 100 * 1024)
}

/** Runs each text `repeat` times; returns every sample, and each text's median (robust to scheduler noise). */
const timeEach = (texts: ReadonlyArray<string>, run: (text: string) => unknown, repeat = 1) => {
  const samples: Array<number> = []
  const medians: Array<number> = []
  for (const text of texts) {
    const own: Array<number> = []
    for (let round = 0; round < repeat; round++) {
      const start = performance.now()
      run(text)
      own.push(performance.now() - start)
    }
    samples.push(...own)
    medians.push(
      quantile(
        [...own].sort((a, b) => a - b),
        0.5
      )
    )
  }
  return { samples: samples.sort((a, b) => a - b), medians: medians.sort((a, b) => a - b) }
}

const ms = (value: number, digits = 3) => `${value.toFixed(digits)} ms`

const benchTime = (prompts: ReadonlyArray<PromptRow>, piiRows: ReadonlyArray<PiiRow>) => {
  const load = loadavg()
    .map((value) => value.toFixed(2))
    .join(" ")
  console.log(`\n== Time (Node ${process.version}, ${availableParallelism()} CPUs, load average ${load}) ==\n`)
  const inspect = makeInspector(defaultInspectOptions)
  const texts = [...prompts.map((row) => row.text), ...piiRows.map((row) => row.text)]
  timeEach(texts, inspect) // warm-up
  const all = timeEach(texts, inspect, 3)
  const totalKb = (3 * texts.reduce((sum, text) => sum + text.length, 0)) / 1024
  const total = all.samples.reduce((sum, time) => sum + time, 0)
  console.log(
    `  inspect, every message of both files (${texts.length}, 3 runs each): median ${ms(quantile(all.samples, 0.5))}, ` +
      `p99 ${ms(quantile(all.samples, 0.99))}, ${ms(total / totalKb)} per KB`
  )

  // 4 KB messages: consecutive prompts of the data, one a line, cut at 4096 characters, each inspected many times.
  // Copied into flat strings of their own, as a request body parsed from JSON would be (a slice of the joined text
  // would be a view into it, which reads more slowly).
  const joined = prompts.map((row) => row.text).join("\n")
  const fourKb = Array.from({ length: 100 }, (_, index) => {
    const start = (index * 7919) % Math.max(1, joined.length - 4096)
    return JSON.parse(JSON.stringify(joined.slice(start, start + 4096))) as string
  })
  const fourKbTimes = timeEach(fourKb, inspect, 20)
  const fourKbTotal = fourKbTimes.samples.reduce((sum, time) => sum + time, 0)
  console.log(
    `  inspect, 4 KB messages (100 messages x 20 runs, every run counted, garbage collection included): ` +
      `median ${ms(quantile(fourKbTimes.samples, 0.5))}, p99 ${ms(quantile(fourKbTimes.samples, 0.99))}, ` +
      `max ${ms(fourKbTimes.samples.at(-1)!)}, ${ms(fourKbTotal / fourKbTimes.samples.length / 4)} per KB ` +
      `(p99 over the messages of each one's median: ${ms(quantile(fourKbTimes.medians, 0.99))})`
  )
  const logTimes = timeEach(fourKb, (text) => findPii(text), 20)
  console.log(
    `  PII only (what log redaction runs), 4 KB: median ${ms(quantile(logTimes.samples, 0.5))}, ` +
      `p99 ${ms(quantile(logTimes.samples, 0.99))}`
  )

  const adversarial = adversarialInput()
  const adversarialTimes = timeEach([adversarial], inspect, 10).samples
  console.log(
    `  inspect, 100 KB adversarial input (near-misses of every pattern), 10 runs: ` +
      `median ${ms(quantile(adversarialTimes, 0.5), 1)}, max ${ms(adversarialTimes.at(-1)!, 1)}, ` +
      `${ms(quantile(adversarialTimes, 0.5) / 100)} per KB`
  )
  console.log(
    `  targets: 4 KB p99 under 1 ms (${quantile(fourKbTimes.samples, 0.99) < 1 ? "met" : "MISSED"}), ` +
      `100 KB adversarial under 50 ms (${adversarialTimes.at(-1)! < 50 ? "met" : "MISSED"})`
  )
}

if (!existsSync(resolve(dataDir, "prompts_dev.jsonl")) || !existsSync(resolve(dataDir, "pii_dev.jsonl"))) {
  console.log(`No evaluation data in ${dataDir}: nothing to measure (see the shared evaldata README).`)
} else {
  const prompts = readJsonLines<PromptRow>("prompts_dev.jsonl")
  const piiRows = readJsonLines<PiiRow>("pii_dev.jsonl")
  benchPrompts(prompts)
  benchPii(piiRows)
  benchTime(prompts, piiRows)
}
