/**
 * The sliding window: the prompt budget by TGI's rule, and the choice of turns, by example and as properties over
 * random conversations (fast-check), with exact counts checked against the dev TGI server's rendering of the
 * Mistral v0.3 template and its tokenization.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import fc from "fast-check"
import { applyChatTemplate, tokenize } from "../dev/tgi/server.js"
import {
  DEFAULT_CONTEXT_TOKENS,
  promptBudget,
  promptTokens,
  slidingWindow,
  type WindowTurn
} from "../src/Session/Window.js"
import { loadTokenizer } from "../src/Tokenizer.js"

const some = Option.some
const none = Option.none()

describe("promptBudget: min(max_input_tokens, max_total_tokens − MAX_NEW_TOKENS)", () => {
  it.each([
    ["TGI's defaults", some(4095), some(4096), 512, 3584],
    ["the input limit is smaller", some(1000), some(8192), 512, 1000],
    ["only a total", none, some(4096), 512, 3584],
    ["only an input limit", some(3000), none, 512, 3000],
    ["no limit known: the model's own context", none, none, 512, DEFAULT_CONTEXT_TOKENS - 512]
  ])("%s", (_, maxInputTokens, maxTotalTokens, maxNewTokens, expected) => {
    expect(promptBudget({ maxInputTokens, maxTotalTokens, maxNewTokens })).toBe(expected)
  })
})

const turnOf = (userTokens: number, assistantTokens: number): WindowTurn => ({
  user: { tokens: userTokens },
  assistant: { tokens: assistantTokens }
})

describe("slidingWindow", () => {
  // Template: <s> + [INST] [/INST] around the last message = 3; each earlier turn adds [INST] [/INST] </s> = 3.
  it("keeps the newest turns that fit, dropping the oldest first", () => {
    const turns = [turnOf(10, 10), turnOf(10, 10), turnOf(10, 10)]
    const window = slidingWindow(turns, 5, 3 + 5 + 2 * 23)
    expect(window).toEqual({ turns: turns.slice(1), dropped: 1, promptTokens: 3 + 5 + 2 * 23 })
  })

  it("a turn that does not fit ends the window, even if an older one would fit", () => {
    const turns = [turnOf(1, 1), turnOf(100, 100), turnOf(1, 1)]
    const window = slidingWindow(turns, 5, 50)
    expect(window.turns).toEqual([turns[2]])
    expect(window.dropped).toBe(2)
  })

  it("keeps everything when everything fits", () => {
    const turns = [turnOf(1, 2), turnOf(3, 4)]
    expect(slidingWindow(turns, 5, 1_000)).toEqual({ turns, dropped: 0, promptTokens: 3 + 5 + 3 + 3 + 3 + 7 })
  })

  it("is empty (and over budget, for the caller to reject) when the last message alone does not fit", () => {
    const window = slidingWindow([turnOf(1, 1)], 100, 50)
    expect(window.turns).toEqual([])
    expect(window.promptTokens).toBe(promptTokens([], 100))
    expect(window.promptTokens).toBeGreaterThan(50)
  })

  const conversation = fc.record({
    turns: fc.array(
      fc.record({ user: fc.nat(300), assistant: fc.nat(300) }).map(({ user, assistant }) => turnOf(user, assistant)),
      { maxLength: 30 }
    ),
    lastMessageTokens: fc.nat(300),
    budget: fc.nat(5_000)
  })

  it("property: newest turns only, never over budget, and no room left for the next older turn", () => {
    fc.assert(
      fc.property(conversation, ({ turns, lastMessageTokens, budget }) => {
        const window = slidingWindow(turns, lastMessageTokens, budget)
        // A contiguous run of the newest turns, whole.
        expect(window.turns).toEqual(turns.slice(window.dropped))
        expect(window.promptTokens).toBe(promptTokens(window.turns, lastMessageTokens))
        if (promptTokens([], lastMessageTokens) <= budget) {
          expect(window.promptTokens).toBeLessThanOrEqual(budget)
          if (window.dropped > 0) {
            expect(promptTokens(turns.slice(window.dropped - 1), lastMessageTokens)).toBeGreaterThan(budget)
          }
        } else {
          expect(window.turns).toEqual([])
        }
      })
    )
  })

  describe("with real text, counted by the tokenizer", () => {
    const tokenizer = loadTokenizer()
    const count = <A>(effect: Effect.Effect<A>) => Effect.runSync(effect)

    // Text that spells a control token is counted as plain text by Nexxi but split out by TGI's tokenizer; it only
    // makes Nexxi over-count, so it is left out of the exact comparison.
    const spellsControlToken = (text: string) => /\[|<\/?s>|<unk>/.test(text)
    const text = fc
      .oneof(
        fc.string({ unit: "grapheme", maxLength: 40 }),
        fc.string({ unit: "grapheme-ascii", maxLength: 80 }),
        fc
          .array(fc.constantFrom("hello", " world", "Ada", " ", "\n", "日本語", "🎉", "é", "  ", ".", "\t", "Über"), {
            maxLength: 25
          })
          .map((pieces) => pieces.join(""))
      )
      .filter((t) => !spellsControlToken(t))

    const chat = fc.record({
      system: text,
      turns: fc.array(fc.record({ user: text, assistant: text }), { maxLength: 8 }),
      last: text,
      budget: fc.nat(400)
    })

    it("property: the window's count is exactly the tokens of the prompt it builds, and within budget", () => {
      fc.assert(
        fc.property(chat, ({ system, turns, last, budget }) => {
          const counted = turns.map((t) => ({
            ...t,
            user: { tokens: count(tokenizer.messageTokens("user", t.user)) },
            assistant: { tokens: count(tokenizer.messageTokens("assistant", t.assistant)) }
          }))
          const lastMessageTokens = count(tokenizer.lastMessageTokens(system, last))
          const window = slidingWindow(counted, lastMessageTokens, budget)
          const kept = turns.slice(window.dropped)
          const prompt = applyChatTemplate([
            { role: "system", content: system },
            ...kept.flatMap((t) => [
              { role: "user", content: t.user },
              { role: "assistant", content: t.assistant }
            ]),
            { role: "user", content: last }
          ])
          const exact = tokenize(prompt, false).length
          expect(window.promptTokens).toBe(exact)
          if (promptTokens([], lastMessageTokens) <= budget) expect(exact).toBeLessThanOrEqual(budget)
        }),
        { numRuns: 200 }
      )
    })
  })
})
