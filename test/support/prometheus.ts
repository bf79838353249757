/** A strict reader of the Prometheus text format, for tests that read /metrics. */

// --- A strict reader for the Prometheus text format 0.0.4 ------------------------------------------------------
// Stricter than Prometheus itself where our output has no reason to vary: only HELP and TYPE comments, no
// timestamps, families contiguous, HELP then TYPE then samples.

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Family {
  readonly name: string
  readonly help: string
  readonly type: string
  readonly samples: Array<Sample>
}

const metricName = "[a-zA-Z_:][a-zA-Z0-9_:]*"
const labelName = "[a-zA-Z_][a-zA-Z0-9_]*"
const labelValue = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"'
const label = `${labelName}=${labelValue}`
const sampleValue = "[-+]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN"
const sampleLine = new RegExp(`^(${metricName})(?:\\{((?:${label})(?:,${label})*)?\\})? (${sampleValue})$`)
const helpLine = new RegExp(`^# HELP (${metricName}) (.*)$`)
const typeLine = new RegExp(`^# TYPE (${metricName}) (counter|gauge|histogram|summary|untyped)$`)
const labelPair = new RegExp(`(${labelName})=(${labelValue})`, "g")

const unescapeLabelValue = (quoted: string) =>
  quoted.slice(1, -1).replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c))

const parseValue = (text: string) =>
  text === "+Inf" || text === "Inf" ? Infinity : text === "-Inf" ? -Infinity : Number(text)

/** Counter and gauge samples carry the family name; histogram samples add `_bucket`, `_sum` or `_count`. */
const belongsTo = (sample: string, family: Family) =>
  family.type === "histogram" || family.type === "summary"
    ? /^(.*)_(bucket|sum|count)$/.exec(sample)?.[1] === family.name
    : sample === family.name

/** Parses an exposition, throwing on the first line that is not valid. */
export const parseExposition = (text: string): Map<string, Family> => {
  const families = new Map<string, Family>()
  const seriesSeen = new Set<string>()
  let current: Family | undefined
  let pendingHelp: { name: string; help: string } | undefined
  const fail = (lineNumber: number, line: string, why: string): never => {
    throw new Error(`line ${lineNumber + 1} ${why}: ${JSON.stringify(line)}`)
  }
  if (!text.endsWith("\n")) throw new Error("the exposition does not end with a newline")
  text
    .slice(0, -1)
    .split("\n")
    .forEach((line, lineNumber) => {
      const help = helpLine.exec(line)
      if (help) {
        if (families.has(help[1]!)) fail(lineNumber, line, "repeats a family (families must be contiguous)")
        if (pendingHelp) fail(lineNumber, line, "follows a HELP without TYPE")
        pendingHelp = { name: help[1]!, help: help[2]! }
        return
      }
      const type = typeLine.exec(line)
      if (type) {
        if (pendingHelp?.name !== type[1]) fail(lineNumber, line, "is a TYPE without its HELP just before")
        current = { name: type[1]!, help: pendingHelp!.help, type: type[2]!, samples: [] }
        families.set(current.name, current)
        pendingHelp = undefined
        return
      }
      if (line.startsWith("#")) fail(lineNumber, line, "is a comment other than HELP/TYPE")
      const sample = sampleLine.exec(line)
      if (!sample) return fail(lineNumber, line, "is not `name{labels} value`")
      if (current === undefined || pendingHelp || !belongsTo(sample[1]!, current)) {
        fail(lineNumber, line, "is not under the HELP/TYPE of its own family")
      }
      const labels: Record<string, string> = {}
      for (const [, name, value] of (sample[2] ?? "").matchAll(labelPair)) {
        if (name! in labels) fail(lineNumber, line, `repeats label ${name}`)
        labels[name!] = unescapeLabelValue(value!)
      }
      if ("le" in labels !== sample[1]!.endsWith("_bucket")) fail(lineNumber, line, "misplaces the le label")
      const series = `${sample[1]}${JSON.stringify(Object.entries(labels).sort())}`
      if (seriesSeen.has(series)) fail(lineNumber, line, "repeats a series")
      seriesSeen.add(series)
      current!.samples.push({ name: sample[1]!, labels, value: parseValue(sample[3]!) })
    })
  if (pendingHelp) throw new Error(`HELP ${pendingHelp.name} has no TYPE`)
  return families
}

const matches = (sample: Sample, name: string, labels: Readonly<Record<string, string>>) =>
  sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value)

export const samplesOf = (
  families: ReadonlyMap<string, Family>,
  name: string,
  labels: Readonly<Record<string, string>>
) => [...families.values()].flatMap((family) => family.samples.filter((sample) => matches(sample, name, labels)))

/** The single sample with this name and (at least) these labels. */
export const valueOf = (
  families: ReadonlyMap<string, Family>,
  name: string,
  labels: Readonly<Record<string, string>> = {}
) => {
  const found = samplesOf(families, name, labels)
  // No test-framework import here: scripts (the soak) read metrics too.
  if (found.length !== 1) throw new Error(`expected exactly one ${name} ${JSON.stringify(labels)}, got ${found.length}`)
  return found[0]!.value
}

/** A counter's or gauge's value, or a histogram's count; 0 while the series does not exist yet. */
export const valueOrZero = (
  families: ReadonlyMap<string, Family>,
  name: string,
  labels: Readonly<Record<string, string>> = {}
) => samplesOf(families, name, labels)[0]?.value ?? 0
