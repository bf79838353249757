/**
 * Streaming redaction: however a reply is cut into pieces, what comes out equals the redaction of the whole reply —
 * a secret or a phone number split across tokens is still caught, and nothing sensitive leaves early.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import fc from "fast-check"
import { redactPii } from "../src/Safety/Redact.js"
import { HOLD_BACK, makeStreamRedactor, redactStream } from "../src/Safety/Redactor.js"
import { secretRules } from "../src/Safety/Secrets.js"

const streamed = (pieces: ReadonlyArray<string>) => {
  const redactor = makeStreamRedactor()
  return pieces.map(redactor.push).join("") + redactor.flush()
}

const privateKey =
  "-----BEGIN PRIVATE KEY-----\n" +
  Array.from({ length: 6 }, (_, line) => "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ" + line).join("\n") +
  "\n-----END PRIVATE KEY-----"

const samples = [
  "Sure! Write to jane.roe@example.org or call +44 20 7946 0958 before Friday; thanks.",
  "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 536-22-1478, from 10.0.0.1 or 2001:db8::1.",
  "Connect with postgres://app:Sup3rS3cret@db.internal.example:5432/app and Authorization: Bearer q8Zr2Lt6Vx0Bn4Cj8Dk2Fs6Gh",
  `Here is the key you asked for:\n${privateKey}\nKeep it safe.`,
  ...secretRules.map((rule) => `The value is ${rule.example} — keep it out of the logs.`)
]

describe("makeStreamRedactor", () => {
  it.each(samples.map((sample) => [sample.slice(0, 40), sample] as const))(
    "split in two at every position: %s…",
    (_, sample) => {
      const expected = redactPii(sample).text
      for (let cut = 0; cut <= sample.length; cut++) {
        expect(streamed([sample.slice(0, cut), sample.slice(cut)]), `cut at ${cut}`).toBe(expected)
      }
    }
  )

  it("token by token, whatever the token sizes", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...samples),
        fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 40 }),
        (sample, sizes) => {
          const pieces: Array<string> = []
          for (let start = 0, index = 0; start < sample.length; index++) {
            const size = sizes[index % sizes.length]!
            pieces.push(sample.slice(start, start + size))
            start += size
          }
          expect(streamed(pieces)).toBe(redactPii(sample).text)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("random text around secrets, cut anywhere", () => {
    const word = fc.stringMatching(/^[a-z]{1,8}$/)
    fc.assert(
      fc.property(
        fc.array(fc.oneof(word, fc.constantFrom(...secretRules.map((rule) => rule.example), "jane@example.org")), {
          minLength: 1,
          maxLength: 30
        }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (parts, cuts) => {
          const text = parts.join(" ")
          const points = [...new Set(cuts.map((cut) => cut % (text.length + 1)))].sort((a, b) => a - b)
          const pieces = [0, ...points].map((start, index) => text.slice(start, [...points, text.length][index]))
          expect(streamed(pieces)).toBe(redactPii(text).text)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("sends text as soon as it is safe, holding back only the tail", () => {
    const redactor = makeStreamRedactor()
    const sent = redactor.push("a".repeat(10) + " " + "word ".repeat(40))
    expect(sent.length).toBeGreaterThan(0)
    expect(sent.length).toBeGreaterThanOrEqual(10 + 1 + 200 - HOLD_BACK - 5)
    expect(sent + redactor.flush()).toBe("a".repeat(10) + " " + "word ".repeat(40))
  })

  it("never sends the start of a secret before its end has arrived", () => {
    const redactor = makeStreamRedactor()
    const key = "ghp_R8fk2LqZp0Xw3Ty7Bn4Mc9Vd1Hs6Ja5Ke2Ug"
    let sent = redactor.push("Your token is " + key.slice(0, 10))
    for (const char of key.slice(10)) sent += redactor.push(char)
    expect(sent).not.toContain("ghp_")
    expect(sent + redactor.push(" and that is all, folks.") + redactor.flush()).toBe(
      "Your token is [SECRET] and that is all, folks."
    )
  })
})

describe("redactStream", () => {
  it.effect("redacts an Effect stream of pieces", () =>
    Effect.gen(function* () {
      const sample = samples[0]!
      const pieces = sample.match(/.{1,3}/gs)!
      const out = yield* Stream.runCollect(redactStream(Stream.fromIterable(pieces)))
      expect(Chunk.join(out, "")).toBe(redactPii(sample).text)
      expect(Chunk.toReadonlyArray(out).every((piece) => piece.length > 0)).toBe(true)
    })
  )
})
