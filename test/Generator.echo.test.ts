import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Stream, TestClock } from "effect"
import type { GenerationRequest } from "../src/Generator.js"
import { echoReply, echoTokens, makeEcho } from "../src/Generator/Echo.js"

const request = (message: string, extra: Partial<GenerationRequest> = {}): GenerationRequest => ({
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: message }
  ],
  maxNewTokens: 512,
  ...extra
})

describe("echo generator", () => {
  it.effect("streams its reply word by word, paced by its delay, and reports its own token counts", () =>
    Effect.gen(function* () {
      const echo = makeEcho(20)
      const fiber = yield* Stream.runCollect(echo.stream(request("hello world"))).pipe(Effect.fork)
      const expected = echoTokens(echoReply(request("hello world")))
      // Each token waits for the delay: the whole reply needs the delay times its length.
      yield* TestClock.adjust(20 * expected.length)
      const chunks = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      const texts = chunks.flatMap((chunk) => (chunk._tag === "Token" ? [chunk.text] : []))
      expect(texts.join("")).toBe(echoReply(request("hello world")))
      expect(texts).toEqual(expected)
      expect(chunks.at(-1)).toMatchObject({
        _tag: "Completed",
        finishReason: "eos",
        completionTokens: expected.length,
        promptTokens: echoTokens("Be brief.").length + echoTokens("hello world").length
      })
    })
  )

  it.effect("does not finish before its tokens' time has passed", () =>
    Effect.gen(function* () {
      const fiber = yield* Stream.runCollect(makeEcho(1000).stream(request("slow"))).pipe(Effect.fork)
      yield* TestClock.adjust(1000)
      expect(fiber.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(fiber)
    })
  )

  it.effect("stops at max_new_tokens with finish reason length", () =>
    Effect.gen(function* () {
      const generation = yield* makeEcho(0).generate(request("one two three", { maxNewTokens: 3 }))
      expect(generation.completion).toMatchObject({ finishReason: "length", completionTokens: 3 })
      expect(generation.text).toBe(
        echoTokens(echoReply(request("one two three")))
          .slice(0, 3)
          .join("")
      )
    })
  )

  it.effect("stops before a stop sequence with finish reason stop", () =>
    Effect.gen(function* () {
      const generation = yield* makeEcho(0).generate(request("alpha beta gamma", { stop: ["beta"] }))
      expect(generation.text).toBe("You said: alpha ")
      expect(generation.completion.finishReason).toBe("stop")
    })
  )

  it.effect("says it is the echo model and needs no server", () =>
    Effect.gen(function* () {
      const echo = makeEcho(0)
      expect((yield* echo.info).modelId).toBe("echo")
      expect(yield* echo.readiness).toMatchObject({ status: "embedded", kind: "echo" })
    })
  )
})
