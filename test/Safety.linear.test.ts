/**
 * Every pattern runs in linear time. Two checks: the shape of the patterns (no unbounded repetition at all in the
 * injection signals and secret rules, so no backtracking can blow up), and adversarial inputs — long runs of
 * near-matches of every pattern — that a quadratic pattern would take seconds or minutes on, with a bound that
 * is generous for a linear one even on a loaded machine (the benchmark measures the real figures).
 */
import { describe, expect, it } from "@effect/vitest"
import { signals } from "../src/Safety/Injection.js"
import { makeInspector } from "../src/Safety/Inspect.js"
import { findPii } from "../src/Safety/Redact.js"
import { makeStreamRedactor } from "../src/Safety/Redactor.js"
import { secretRules } from "../src/Safety/Secrets.js"

/** The quantifiers of a pattern that have no upper bound (`*`, `+`, `{n,}`), outside character classes. */
const unboundedQuantifiers = (source: string): Array<string> => {
  const found: Array<string> = []
  for (let index = 0; index < source.length; index++) {
    const char = source[index]!
    if (char === "\\") {
      index++
    } else if (char === "[") {
      for (index++; index < source.length && source[index] !== "]"; index++) if (source[index] === "\\") index++
    } else if (char === "*" || char === "+") {
      found.push(source.slice(Math.max(0, index - 12), index + 1))
    } else if (char === "{") {
      const quantifier = /^\{\d+,\}/.exec(source.slice(index))
      if (quantifier !== null) found.push(source.slice(Math.max(0, index - 12), index) + quantifier[0])
    }
  }
  return found
}

const SIZE = 100 * 1024
const repeatTo = (piece: string) => piece.repeat(Math.ceil(SIZE / piece.length)).slice(0, SIZE)

const timed = (run: () => unknown) => {
  const start = performance.now()
  run()
  return performance.now() - start
}

/** A quadratic pattern takes tens of seconds on 100 KB; a linear one tens of milliseconds. */
const GENEROUS_MS = 2_000

describe("pattern shapes", () => {
  it("the unbounded-quantifier check sees them", () => {
    expect(unboundedQuantifiers("a+b*[x+*]c{2,}\\+d{1,3}")).toHaveLength(3)
  })

  it.each(signals.map((candidate) => [candidate.id, candidate.regex.source] as const))(
    "injection signal %s repeats nothing without bound",
    (_, source) => {
      expect(unboundedQuantifiers(source)).toEqual([])
    }
  )

  it.each(secretRules.map((rule) => [rule.id, rule.pattern.source] as const))(
    "secret rule %s repeats nothing without bound",
    (_, source) => {
      expect(unboundedQuantifiers(source)).toEqual([])
    }
  )
})

describe("adversarial inputs of 100 KB", () => {
  const inspect = makeInspector()
  const nearMisses = [
    signals.map((candidate) => candidate.example.slice(0, -1)).join(" "),
    secretRules.map((rule) => rule.example.slice(0, -1)).join(" "),
    "a",
    "1",
    "a@",
    "1 ",
    "1-",
    "+1 (",
    "a.",
    "fe80::",
    "4111 1111 1111 111 ",
    "GB82 WEST 1234 5698 7654 3 ",
    "192.168.1. ",
    "-----BEGIN PRIVATE KEY-----\n",
    "https://user:",
    "QUFB",
    "01000001 ",
    "\\x41",
    "%41",
    ".- ",
    "i g n o r e ",
    "1gn0r3 ",
    "ignore ",
    "<!-- ",
    "password = ",
    "\u200b",
    "\uDB40\uDC41"
  ]

  it.each(nearMisses.map((piece) => [JSON.stringify(piece.slice(0, 24)), repeatTo(piece)] as const))(
    "%s repeated: inspected in linear time",
    (_, text) => {
      expect(timed(() => inspect(text))).toBeLessThan(GENEROUS_MS)
    }
  )

  it("the streaming redactor stays linear on a long token that never ends", () => {
    const redactor = makeStreamRedactor()
    const elapsed = timed(() => {
      for (let sent = 0; sent < SIZE; sent += 8) redactor.push("Ab3De5Gh")
      redactor.flush()
    })
    expect(elapsed).toBeLessThan(GENEROUS_MS)
  })

  it("PII detection alone, on every near-miss at once", () => {
    const mixed = repeatTo(nearMisses.join("\n"))
    expect(timed(() => findPii(mixed))).toBeLessThan(GENEROUS_MS)
  })
})
