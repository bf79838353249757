/**
 * Token counts are exact: known encodings of Mistral-7B-Instruct-v0.3's tokenizer, and whole prompts counted the
 * way the chat template lays them out (checked against the dev TGI server's own rendering and tokenization).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { applyChatTemplate, tokenize } from "../dev/tgi/server.js"
import { promptTokens } from "../src/Session/Window.js"
import { Tokenizer } from "../src/Tokenizer.js"

describe("Tokenizer", () => {
  it.layer(Tokenizer.Default)((it) => {
    it.effect("encodes known strings to Mistral v0.3's ids", () =>
      Effect.gen(function* () {
        const tokenizer = yield* Tokenizer
        expect(yield* tokenizer.encode("Hello world!")).toEqual([23325, 2294, 29576])
        expect(yield* tokenizer.encode("")).toEqual([])
        // Text that spells a control token is plain text, never the control token (3 = [INST]).
        expect(yield* tokenizer.encode("[INST]")).not.toContain(3)
      })
    )

    it.effect("counts a message as it sits in the template: replies trimmed, user text as sent", () =>
      Effect.gen(function* () {
        const tokenizer = yield* Tokenizer
        expect(yield* tokenizer.messageTokens("user", "Hello world!")).toBe(3)
        expect(yield* tokenizer.messageTokens("assistant", "  Hello world!\n")).toBe(3)
        expect(yield* tokenizer.messageTokens("assistant", "")).toBe(0)
        expect(yield* tokenizer.messageTokens("user", " Hello world!")).toBeGreaterThan(3)
      })
    )

    it.effect("counts any text word by word exactly as its whole encoding, also when the words are seen again", () =>
      Effect.gen(function* () {
        const tokenizer = yield* Tokenizer
        const countsMatch = (text: string) =>
          Effect.runSync(tokenizer.messageTokens("user", text)) === Effect.runSync(tokenizer.encode(text)).length
        for (const text of [" ", "  ", "a ", "a  ", " a", "  a  b   ", "a\n b", "a \n", "x\t y", "ééé  日本"])
          expect(countsMatch(text), JSON.stringify(text)).toBe(true)
        const piece = fc.constantFrom(
          ..." ,  \n\t.!?'\"-:;()[]{}/\\0123456789aeiouAEIOU".split(""),
          "the",
          "The",
          " the",
          "ing",
          "tion",
          "un",
          "Nexxi",
          "https://",
          "é",
          "ß",
          "日本語",
          "Привет",
          "مرحبا",
          "🎉",
          "👩‍💻",
          "[INST]",
          "</s>",
          "\u00a0",
          "\u3000"
        )
        fc.assert(
          fc.property(fc.array(piece, { maxLength: 40 }), (pieces) => countsMatch(pieces.join(""))),
          { numRuns: 2_000 }
        )
      })
    )

    it.effect("the last message is counted together with the system prompt before it", () =>
      Effect.gen(function* () {
        const tokenizer = yield* Tokenizer
        const joined = yield* tokenizer.encode("Be brief.\n\nhello there")
        expect(yield* tokenizer.lastMessageTokens("Be brief.", "hello there")).toBe(joined.length)
        // Not the sum of the parts: "hello" after a newline is another piece than at the start of a text.
        const apart =
          (yield* tokenizer.encode("Be brief.")).length + 2 + (yield* tokenizer.encode("hello there")).length
        expect(joined.length).not.toBe(apart)
      })
    )

    it.effect("a whole prompt's count is the template's: <s>[INST] a[/INST] b</s>[INST] sys\\n\\nc[/INST]", () =>
      Effect.gen(function* () {
        const tokenizer = yield* Tokenizer
        const system = "You are Nexxi, a helpful, accurate and concise assistant."
        const turns = [
          ["My name is Ada.", " Nice to meet you, Ada! "],
          ["Ich heiße Ada. 日本語も話せます。", "Schön! 🎉"]
        ] as const
        const last = "What is my name?"
        const counted = promptTokens(
          yield* Effect.forEach(turns, ([user, assistant]) =>
            Effect.all({
              user: Effect.map(tokenizer.messageTokens("user", user), (tokens) => ({ tokens })),
              assistant: Effect.map(tokenizer.messageTokens("assistant", assistant), (tokens) => ({ tokens }))
            })
          ),
          yield* tokenizer.lastMessageTokens(system, last)
        )
        const rendered = applyChatTemplate([
          { role: "system", content: system },
          ...turns.flatMap(([user, assistant]) => [
            { role: "user", content: user },
            { role: "assistant", content: assistant }
          ]),
          { role: "user", content: last }
        ])
        expect(counted).toBe(tokenize(rendered, false).length)
      })
    )
  })
})
