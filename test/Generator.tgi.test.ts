/**
 * The TGI backend against the project's TGI-compatible server, a real HTTP server on loopback: what the server
 * sends is what a client gets, and each way a GPU server misbehaves ends as the documented error.
 */
import { describe, expect, it } from "@effect/vitest"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { Chunk, Effect, Either, Option, Redacted, Stream } from "effect"
import { applyChatTemplate, tokenize } from "../dev/tgi/server.js"
import type { GenerationChunk, GenerationRequest } from "../src/Generator.js"
import { makeTgiGenerator } from "../src/Generator/Tgi.js"
import { startTgi, testResilience, tgiGenerator } from "./support/tgi.js"

const request: GenerationRequest = {
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Say something." }
  ],
  maxNewTokens: 64
}

const texts = (chunks: ReadonlyArray<GenerationChunk>) =>
  chunks.flatMap((chunk) => (chunk._tag === "Token" ? [chunk.text] : []))

/** Runs a generation, keeping what arrived before a failure. */
const collect = (stream: Stream.Stream<GenerationChunk, unknown>) =>
  Effect.gen(function* () {
    const received: Array<GenerationChunk> = []
    const result = yield* Stream.runForEach(stream, (chunk) => Effect.sync(() => received.push(chunk))).pipe(
      Effect.either
    )
    return { received, error: Either.getLeft(result) as Option.Option<{ _tag: string; message: string }> }
  })

describe("TGI backend", () => {
  it.scopedLive("streams exactly the tokens the server sent, in order, with the server's counts", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ reply: "Paris is the capital of France.", tokensPerSecond: 0 })
      const generator = yield* tgiGenerator(tgi.url)
      const { received, error } = yield* collect(generator.stream(request))
      expect(error).toEqual(Option.none())
      expect(texts(received)).toEqual(tokenize("Paris is the capital of France.", false).map((token) => token.text))
      const completion = received.at(-1)!
      // The template already starts with <s>: no special tokens added when counting it.
      const promptTokens = tokenize(applyChatTemplate(request.messages), false).length
      const sent = tgi.requests.find((r) => r.path === "/v1/chat/completions")!
      expect(completion).toMatchObject({
        _tag: "Completed",
        finishReason: "eos",
        promptTokens,
        completionTokens: sent.tokensSent
      })
      // TGI's Messages API: the template is applied by the server, the stream asks for usage.
      expect(sent.body).toMatchObject({ stream: true, max_tokens: 64, stream_options: { include_usage: true } })
    })
  )

  it.scopedLive("sends TGI_API_KEY as a bearer token on every call", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ reply: "ok" })
      const generator = yield* makeTgiGenerator({
        url: tgi.url,
        apiKey: Option.some(Redacted.make("tgi-secret")),
        resilience: testResilience
      })
      yield* generator.info
      yield* generator.generate(request)
      expect(new Set(tgi.requests.map((r) => r.path))).toEqual(new Set(["/info", "/v1/chat/completions"]))
      expect(tgi.requests.every((r) => r.headers.authorization === "Bearer tgi-secret")).toBe(true)
    })
  )

  it.scopedLive("reports the model and context limits from /info", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ modelId: "acme/tiny-model", maxInputTokens: 1000, maxTotalTokens: 2048 })
      const info = yield* (yield* tgiGenerator(tgi.url)).info
      expect(info).toEqual({
        modelId: "acme/tiny-model",
        maxInputTokens: Option.some(1000),
        maxTotalTokens: Option.some(2048)
      })
    })
  )

  it.scopedLive("stops at max_new_tokens with finish reason length", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ replyTokens: 50 })
      const generation = yield* (yield* tgiGenerator(tgi.url)).generate({ ...request, maxNewTokens: 5 })
      expect(generation.completion).toMatchObject({ finishReason: "length", completionTokens: 5 })
    })
  )

  it.scopedLive("retries 503 and 429 before the first token, then succeeds", () =>
    Effect.gen(function* () {
      for (const status of [503, 429]) {
        const tgi = yield* startTgi({ fault: { kind: "status", status }, failTimes: 2, reply: "fine" })
        const generation = yield* (yield* tgiGenerator(tgi.url)).generate(request)
        expect(generation.text).toBe("fine")
        expect(tgi.requests.filter((r) => r.path === "/v1/chat/completions")).toHaveLength(3)
      }
    })
  )

  it.scopedLive("a server that keeps refusing connections → 503 with Retry-After, after the retries", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ fault: { kind: "refuse" } })
      const { received, error } = yield* collect((yield* tgiGenerator(tgi.url)).stream(request))
      expect(received).toEqual([])
      expect(error).toEqual(
        Option.some(expect.objectContaining({ _tag: "GeneratorUnavailable", retry_after_seconds: 1 }))
      )
    })
  )

  it.scopedLive("an overloaded server (429) → 503 after the retries", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ fault: { kind: "status", status: 429 } })
      const { error } = yield* collect((yield* tgiGenerator(tgi.url, { maxRetries: 1 })).stream(request))
      expect(error.pipe(Option.map((e) => e._tag))).toEqual(Option.some("GeneratorUnavailable"))
      expect(tgi.requests.filter((r) => r.path === "/v1/chat/completions")).toHaveLength(2)
    })
  )

  it.scopedLive("input too long for the model (TGI 422 in the stream) → 422 naming the limit, not retried", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ maxInputTokens: 20, maxTotalTokens: 40 })
      const long = { ...request, messages: [{ role: "user" as const, content: "word ".repeat(100) }] }
      const { error } = yield* collect((yield* tgiGenerator(tgi.url)).stream(long))
      expect(error).toEqual(Option.some(expect.objectContaining({ _tag: "InputTooLong" })))
      expect(error.pipe(Option.map((e) => e.message))).toEqual(Option.some(expect.stringContaining("40")))
      expect(tgi.requests.filter((r) => r.path === "/v1/chat/completions")).toHaveLength(1)
    })
  )

  it.scopedLive("a generation error from TGI (500, 424) → 502, not retried", () =>
    Effect.gen(function* () {
      for (const status of [500, 424]) {
        const tgi = yield* startTgi({ fault: { kind: "status", status } })
        const { error } = yield* collect((yield* tgiGenerator(tgi.url)).stream(request))
        expect(error.pipe(Option.map((e) => e._tag))).toEqual(Option.some("GeneratorFailed"))
        expect(tgi.requests.filter((r) => r.path === "/v1/chat/completions")).toHaveLength(1)
      }
    })
  )

  it.scopedLive("a server that is not TGI (a web page answering 200) → 502 saying what it answered, not retried", () =>
    Effect.gen(function* () {
      const generations: Array<string> = []
      const server = createServer((incoming, response) => {
        if (incoming.url === "/v1/chat/completions") generations.push(incoming.method ?? "")
        response.writeHead(200, { "content-type": "text/html" }).end("<html>Welcome to nginx!</html>")
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const { port } = server.address() as AddressInfo
      const { received, error } = yield* collect((yield* tgiGenerator(`http://127.0.0.1:${port}`)).stream(request))
      expect(received).toEqual([])
      expect(error).toEqual(
        Option.some(
          expect.objectContaining({
            _tag: "GeneratorFailed",
            message: "The model server failed: the server answered text/html, not events"
          })
        )
      )
      expect(generations).toEqual(["POST"])
    })
  )

  it.scopedLive("an error event before the first token counts as that error, and is retried when transient", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({
        fault: { kind: "errorEvent", afterTokens: 0, errorType: "overloaded", message: "Model is overloaded" },
        failTimes: 1,
        reply: "after all"
      })
      const generation = yield* (yield* tgiGenerator(tgi.url)).generate(request)
      expect(generation.text).toBe("after all")
      expect(tgi.requests.filter((r) => r.path === "/v1/chat/completions")).toHaveLength(2)
    })
  )

  it.scopedLive("a failure after the first token ends the stream with an error, never a retry", () =>
    Effect.gen(function* () {
      const faults = [
        { kind: "errorEvent", afterTokens: 3, errorType: "generation", message: "CUDA out of memory" },
        { kind: "drop", afterTokens: 3 }
      ] as const
      for (const fault of faults) {
        const tgi = yield* startTgi({ fault, replyTokens: 20 })
        const { received, error } = yield* collect((yield* tgiGenerator(tgi.url)).stream(request))
        expect(texts(received), fault.kind).toHaveLength(3)
        expect(Option.isSome(error), fault.kind).toBe(true)
        expect(
          tgi.requests.filter((r) => r.path === "/v1/chat/completions"),
          fault.kind
        ).toHaveLength(1)
      }
    })
  )

  it.scopedLive("a stall before the first token → 504; a stall mid-stream → timeout error after the tokens", () =>
    Effect.gen(function* () {
      const before = yield* startTgi({ fault: { kind: "stall", afterTokens: 0 } })
      const first = yield* collect((yield* tgiGenerator(before.url, { firstTokenTimeoutMs: 200 })).stream(request))
      expect(first.error.pipe(Option.map((e) => e._tag))).toEqual(Option.some("GeneratorTimeout"))

      const mid = yield* startTgi({ fault: { kind: "stall", afterTokens: 2 }, replyTokens: 10 })
      const later = yield* collect((yield* tgiGenerator(mid.url, { idleTimeoutMs: 200 })).stream(request))
      expect(texts(later.received)).toHaveLength(2)
      expect(later.error.pipe(Option.map((e) => e._tag))).toEqual(Option.some("GeneratorTimeout"))
      // The stalled upstream request is aborted, not left hanging.
      yield* Effect.promise(() => mid.waitFor((r) => r.disconnectedAt !== undefined, 1_000))
    })
  )

  it.scopedLive("a slow but steady stream is never cut by the first-token or idle timeouts", () =>
    Effect.gen(function* () {
      // 50 ms per token over 12 tokens: far longer than either timeout, never idle for long.
      const tgi = yield* startTgi({ tokensPerSecond: 20, firstTokenDelayMs: 100, replyTokens: 12 })
      const generator = yield* tgiGenerator(tgi.url, { firstTokenTimeoutMs: 300, idleTimeoutMs: 300 })
      const { received, error } = yield* collect(generator.stream(request))
      expect(error).toEqual(Option.none())
      expect(texts(received)).toHaveLength(12)
    })
  )

  it.scopedLive("interrupting the stream aborts the upstream request: the server sees the disconnect", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ tokensPerSecond: 50, replyTokens: 500 })
      const generator = yield* tgiGenerator(tgi.url)
      const firstTwo = yield* generator.stream(request).pipe(Stream.take(2), Stream.runCollect)
      expect(Chunk.size(firstTwo)).toBe(2)
      const stopped = yield* Effect.promise(() => tgi.waitFor((r) => r.disconnectedAt !== undefined, 1_000))
      expect(stopped.tokensSent).toBeLessThan(500)
    })
  )

  it.scopedLive("readiness follows TGI's /health", () =>
    Effect.gen(function* () {
      const healthy = yield* startTgi()
      expect(yield* (yield* tgiGenerator(healthy.url)).readiness).toEqual({ status: "up", kind: "tgi" })
      const sick = yield* startTgi({ healthy: false })
      expect(yield* (yield* tgiGenerator(sick.url)).readiness).toMatchObject({ status: "down", kind: "tgi" })
      const gone = yield* startTgi({ fault: { kind: "refuse" } })
      expect(yield* (yield* tgiGenerator(gone.url)).readiness).toMatchObject({ status: "down" })
    })
  )

  it.scopedLive("the circuit opens after repeated failures, fails fast, reports down, then closes", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ fault: { kind: "status", status: 503 }, reply: "back" })
      const generator = yield* tgiGenerator(tgi.url, { maxRetries: 0, breakerThreshold: 2, breakerCooldownMs: 300 })
      const attempts = () => tgi.requests.filter((r) => r.path === "/v1/chat/completions").length
      yield* collect(generator.stream(request))
      yield* collect(generator.stream(request))
      expect(attempts()).toBe(2)

      const refused = yield* collect(generator.stream(request))
      expect(attempts()).toBe(2)
      expect(refused.error).toEqual(Option.some(expect.objectContaining({ _tag: "GeneratorUnavailable" })))
      expect(yield* generator.readiness).toMatchObject({ status: "down", detail: expect.stringContaining("circuit") })

      yield* Effect.promise(() => tgi.setOptions({ fault: undefined }))
      // Poll until the cool-down is over, then the trial request closes the circuit.
      yield* Effect.repeat(generator.readiness, { until: (health) => health.status === "up" })
      expect((yield* generator.generate(request)).text).toBe("back")
      expect((yield* generator.generate(request)).text).toBe("back")
    })
  )
})
