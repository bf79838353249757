/** Retries, timeouts and the circuit breaker, on scripted upstreams and the TestClock: no real waiting. */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Either, Fiber, Option, Stream, TestClock } from "effect"
import { GenerationChunk } from "../src/Generator.js"
import {
  makeCircuitBreaker,
  type ResilienceSettings,
  resilientStream,
  UpstreamError
} from "../src/Generator/Resilience.js"

const settings: ResilienceSettings = {
  maxRetries: 2,
  retryBaseMs: 100,
  retryBudgetMs: 10_000,
  firstTokenTimeoutMs: 1_000,
  idleTimeoutMs: 500,
  deadlineMs: Option.none(),
  breakerThreshold: 100,
  breakerCooldownMs: 5_000
}

const token = (text: string) => GenerationChunk.Token({ text })
const done = GenerationChunk.Completed({ finishReason: "eos", promptTokens: 3, completionTokens: 2 })
const unavailable = new UpstreamError({ kind: "unavailable", message: "connection refused" })
const texts = (chunks: Chunk.Chunk<GenerationChunk>) =>
  Chunk.toReadonlyArray(chunks).flatMap((chunk) => (chunk._tag === "Token" ? [chunk.text] : []))

/** An upstream whose attempts are scripted: each call of `open` takes the next script. */
const scripted = (...attempts: ReadonlyArray<Stream.Stream<GenerationChunk, UpstreamError>>) => {
  let calls = 0
  return {
    open: () => attempts[Math.min(calls++, attempts.length - 1)]!,
    calls: () => calls
  }
}

/**
 * A connection that sends nothing more, until it is closed: like an HTTP response, whose read then fails. (The
 * first-token and idle timeouts close the attempt's scope, which aborts the request.)
 */
const stalledConnection = Stream.unwrapScoped(
  Effect.gen(function* () {
    const closed = yield* Deferred.make<void>()
    yield* Effect.addFinalizer(() => Deferred.succeed(closed, undefined))
    return Stream.fromEffect(
      Effect.zipRight(Deferred.await(closed), Effect.fail(new UpstreamError({ kind: "failed", message: "aborted" })))
    )
  })
)

const run = (open: () => Stream.Stream<GenerationChunk, UpstreamError>, overrides: Partial<ResilienceSettings> = {}) =>
  Effect.gen(function* () {
    const merged = { ...settings, ...overrides }
    const breaker = yield* makeCircuitBreaker(merged.breakerThreshold, merged.breakerCooldownMs, "test")
    return yield* resilientStream(open, merged, breaker).pipe(Stream.runCollect, Effect.either, Effect.fork)
  })

describe("retries", () => {
  it.effect("retries a transient failure before the first token, with growing delays", () =>
    Effect.gen(function* () {
      const upstream = scripted(
        Stream.fail(unavailable),
        Stream.fail(unavailable),
        Stream.make(token("a"), token("b"), done)
      )
      const fiber = yield* run(upstream.open)
      yield* TestClock.adjust(0)
      expect(upstream.calls()).toBe(1)
      // Exponential backoff with jitter: the second attempt waits 80–120 ms, the third 160–240 ms more.
      yield* TestClock.adjust(79)
      expect(upstream.calls()).toBe(1)
      yield* TestClock.adjust(41)
      expect(upstream.calls()).toBe(2)
      yield* TestClock.adjust(240)
      expect(upstream.calls()).toBe(3)
      const result = yield* Fiber.join(fiber)
      expect(Either.map(result, texts)).toEqual(Either.right(["a", "b"]))
    })
  )

  it.effect("gives up after GENERATOR_MAX_RETRIES and answers 503 with Retry-After", () =>
    Effect.gen(function* () {
      const upstream = scripted(Stream.fail(unavailable))
      const fiber = yield* run(upstream.open)
      yield* TestClock.adjust(10_000)
      const result = yield* Fiber.join(fiber)
      expect(upstream.calls()).toBe(3)
      expect(Either.getLeft(result)).toEqual(
        Option.some(expect.objectContaining({ _tag: "GeneratorUnavailable", retry_after_seconds: 1 }))
      )
    })
  )

  it.effect("never retries once a token was produced: the failure ends the stream", () =>
    Effect.gen(function* () {
      const upstream = scripted(Stream.concat(Stream.make(token("partial")), Stream.fail(unavailable)))
      const collected: Array<string> = []
      const breaker = yield* makeCircuitBreaker(100, 1_000, "test")
      const fiber = yield* resilientStream(upstream.open, settings, breaker).pipe(
        Stream.runForEach((chunk) => Effect.sync(() => chunk._tag === "Token" && collected.push(chunk.text))),
        Effect.either,
        Effect.fork
      )
      yield* TestClock.adjust(10_000)
      const result = yield* Fiber.join(fiber)
      expect(upstream.calls()).toBe(1)
      expect(collected).toEqual(["partial"])
      expect(Either.getLeft(result).pipe(Option.map((e) => e._tag))).toEqual(Option.some("GeneratorUnavailable"))
    })
  )

  it.effect("does not retry what retrying cannot fix (input too long)", () =>
    Effect.gen(function* () {
      const tooLong = new UpstreamError({ kind: "input_too_long", message: "must be <= 4096 tokens" })
      const upstream = scripted(Stream.fail(tooLong))
      const fiber = yield* run(upstream.open)
      yield* TestClock.adjust(10_000)
      const result = yield* Fiber.join(fiber)
      expect(upstream.calls()).toBe(1)
      expect(Either.getLeft(result).pipe(Option.map((e) => e._tag))).toEqual(Option.some("InputTooLong"))
    })
  )
})

describe("timeouts", () => {
  it.effect("fails with 504 when no first token comes in time", () =>
    Effect.gen(function* () {
      const fiber = yield* run(() => stalledConnection)
      yield* TestClock.adjust(999)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const result = yield* Fiber.join(fiber)
      expect(Either.getLeft(result).pipe(Option.map((e) => [e._tag, e.message]))).toEqual(
        Option.some(["GeneratorTimeout", "The model server sent no token within 1000 ms"])
      )
    })
  )

  it.effect("the idle timeout counts from the last token, even when it is shorter than the first-token timeout", () =>
    Effect.gen(function* () {
      // The first token at 100 ms, then nothing: cut at 600 ms (idle 500), not at 1000 (the first-token timeout).
      const oneThenStall = Stream.concat(Stream.fromEffect(Effect.as(Effect.sleep(100), token("a"))), stalledConnection)
      const fiber = yield* run(() => oneThenStall)
      yield* TestClock.adjust(599)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const result = yield* Fiber.join(fiber)
      expect(Either.getLeft(result).pipe(Option.map((e) => e.message))).toEqual(
        Option.some("The model server stopped sending tokens for 500 ms")
      )
    })
  )

  it.effect("fails when tokens stop coming for longer than the idle timeout", () =>
    Effect.gen(function* () {
      const fiber = yield* run(() => Stream.concat(Stream.make(token("a")), stalledConnection))
      yield* TestClock.adjust(499)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const result = yield* Fiber.join(fiber)
      expect(Either.getLeft(result).pipe(Option.map((e) => e.message))).toEqual(
        Option.some("The model server stopped sending tokens for 500 ms")
      )
    })
  )

  it.effect("never cuts a healthy stream, however long it runs, without a deadline", () =>
    Effect.gen(function* () {
      // 40 tokens, one every 400 ms: 16 s in all, longer than both timeouts, but never idle for 500 ms.
      const slow = Stream.range(1, 40).pipe(
        Stream.mapEffect((n) => Effect.as(Effect.sleep(400), token(`${n} `))),
        Stream.concat(Stream.make(done))
      )
      const fiber = yield* run(() => slow)
      yield* TestClock.adjust(40 * 400)
      const result = yield* Fiber.join(fiber)
      expect(Either.map(result, (chunks) => texts(chunks).length)).toEqual(Either.right(40))
    })
  )

  it.effect("GENERATOR_DEADLINE_MS bounds the whole generation", () =>
    Effect.gen(function* () {
      const slow = Stream.range(1, 40).pipe(Stream.mapEffect((n) => Effect.as(Effect.sleep(400), token(`${n}`))))
      const fiber = yield* run(() => slow, { deadlineMs: Option.some(2_000) })
      yield* TestClock.adjust(2_000)
      const result = yield* Fiber.join(fiber)
      expect(Either.getLeft(result).pipe(Option.map((e) => e._tag))).toEqual(Option.some("GeneratorTimeout"))
    })
  )
})

describe("circuit breaker", () => {
  it.effect("opens after N consecutive failures, fails fast, then lets one trial through after the cool-down", () =>
    Effect.gen(function* () {
      const breaker = yield* makeCircuitBreaker(3, 5_000, "test")
      let healthy = false
      let calls = 0
      const open = () => {
        calls++
        return healthy ? Stream.make(token("ok"), done) : Stream.fail(unavailable)
      }
      const once = resilientStream(open, { ...settings, maxRetries: 0 }, breaker).pipe(Stream.runCollect, Effect.either)

      for (let i = 0; i < 3; i++) yield* once
      expect(calls).toBe(3)
      expect((yield* breaker.state)._tag).toBe("Open")

      // Open: refused without calling the server, with the time left as Retry-After.
      const refused = yield* once
      expect(calls).toBe(3)
      expect(Either.getLeft(refused)).toEqual(
        Option.some(expect.objectContaining({ _tag: "GeneratorUnavailable", retry_after_seconds: 5 }))
      )

      // After the cool-down one trial goes through; it fails, so the circuit opens again.
      yield* TestClock.adjust(5_000)
      yield* once
      expect(calls).toBe(4)
      expect((yield* breaker.state)._tag).toBe("Open")

      // Next trial succeeds: closed again, and requests flow.
      healthy = true
      yield* TestClock.adjust(5_000)
      expect(Either.isRight(yield* once)).toBe(true)
      expect((yield* breaker.state)._tag).toBe("Closed")
      expect(Either.isRight(yield* once)).toBe(true)
      expect(calls).toBe(6)
    })
  )

  it.effect("a success resets the count of consecutive failures", () =>
    Effect.gen(function* () {
      const breaker = yield* makeCircuitBreaker(2, 5_000, "test")
      yield* breaker.onFailure(unavailable)
      yield* breaker.onSuccess
      yield* breaker.onFailure(unavailable)
      expect((yield* breaker.state)._tag).toBe("Closed")
      yield* breaker.onFailure(unavailable)
      expect((yield* breaker.state)._tag).toBe("Open")
    })
  )
})
