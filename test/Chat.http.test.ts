/**
 * The chat endpoints end to end: the real HttpApi served in-process on a loopback port, called with fetch, with
 * test generators where a test needs to control or observe the model.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { GeneratorUnavailable, InputTooLong } from "../src/Generator.js"
import { allow, Safety } from "../src/Safety.js"
import { makeMemoryStorage, Storage, StorageUnavailable } from "../src/Storage.js"
import { failingGenerator, makeGatedGenerator, recordingGenerator } from "./support/generators.js"
import { startTestServer, TEST_API_KEY } from "./support/server.js"
import { readSse } from "./support/sse.js"

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const json = (response: Response) => Effect.promise(() => response.json() as Promise<any>)
const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)

/** The active-streams gauge as /metrics reports it. */
const activeStreams = (server: { url: string }) =>
  call(() => fetch(server.url + "/metrics").then((response) => response.text())).pipe(
    Effect.map((text) => Number(/^nexxi_chat_active_streams (\d+)$/m.exec(text)![1]))
  )

describe("POST /v1/chat", () => {
  it.scopedLive("answers with the contract's fields and the generator's token counts", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["Hello", " there", "!"], 11)
      const server = yield* startTestServer({ generator: generator.layer })
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "Hi" } }))
      expect(response.status).toBe(200)
      const body = yield* json(response)
      expect(Object.keys(body).sort()).toEqual(
        ["message", "model", "response_time_ms", "session_id", "timestamp", "tokens_used"].sort()
      )
      expect(body.session_id).toMatch(UUID_V4)
      expect(body.message).toBe("Hello there!")
      expect(body.model).toBe("test-model")
      expect(body.tokens_used).toBe(11 + 3)
      expect(body.response_time_ms).toBeGreaterThan(0)
      expect(new Date(body.timestamp).toISOString()).toBe(body.timestamp)
      expect(response.headers.get("x-request-id")).toBeTruthy()
    })
  )

  it.scopedLive("with the echo generator says model echo and counts its own tokens", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      const body = yield* json(
        yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "ping pong" } }))
      )
      expect(body.model).toBe("echo")
      expect(body.message).toContain("ping pong")
      const promptWords = body.message.length > 0 ? undefined : 0
      expect(promptWords).toBeUndefined()
      expect(body.tokens_used).toBeGreaterThan(body.message.split(/\s+/).length)
    })
  )

  it.scopedLive("sends the conversation so far with the next turn of a session", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["ok"])
      const server = yield* startTestServer({ generator: generator.layer })
      const first = yield* json(
        yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "My name is Ada" } }))
      )
      const second = yield* call(() =>
        server.request("/v1/chat", { method: "POST", json: { session_id: first.session_id, message: "Who am I?" } })
      )
      expect(second.status).toBe(200)
      expect((yield* json(second)).session_id).toBe(first.session_id)
      const prompt = generator.requests[1]!.messages
      expect(prompt.map((message) => message.role)).toEqual(["system", "user", "assistant", "user"])
      expect(prompt.slice(1).map((message) => message.content)).toEqual(["My name is Ada", "ok", "Who am I?"])
    })
  )

  it.scopedLive("answers 404 for a session that does not exist", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer()
      const response = yield* call(() =>
        server.request("/v1/chat", {
          method: "POST",
          json: { session_id: "6f1c2a47-55e1-4d1e-9d4b-9d3c1b2a7e10", message: "hello" }
        })
      )
      expect(response.status).toBe(404)
      expect((yield* json(response)).error.type).toBe("session_not_found")
    })
  )

  it.scopedLive("blocks what the safety filter blocks, without calling the model", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["never"])
      const safety = Safety.Test((text) =>
        text.includes("forbidden") ? { ...allow(text), action: "block", categories: { jailbreak: 0.99 } } : allow(text)
      )
      const server = yield* startTestServer({ generator: generator.layer, safety })
      const response = yield* call(() =>
        server.request("/v1/chat", { method: "POST", json: { message: "a forbidden request" } })
      )
      expect(response.status).toBe(400)
      const body = yield* json(response)
      expect(body.error.type).toBe("content_blocked")
      expect(body.error.categories).toEqual(["jailbreak"])
      expect(generator.requests).toHaveLength(0)
    })
  )

  it.scopedLive("keeps each turn in storage with its token counts", () =>
    Effect.gen(function* () {
      const storage = Storage.Test()
      const generator = recordingGenerator(["a", "b"], 9)
      const server = yield* startTestServer({ generator: generator.layer, storage: storage.layer })
      const body = yield* json(
        yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "count me" } }))
      )
      expect(storage.turns).toHaveLength(1)
      const turn = storage.turns[0]!
      expect(turn.sessionId).toBe(body.session_id)
      expect([turn.promptTokens, turn.completionTokens]).toEqual([9, 2])
      expect([turn.userMessage.content, turn.reply.content, turn.reply.interrupted]).toEqual(["count me", "ab", false])
    })
  )

  it.scopedLive("refuses a turn with 503 when storage cannot take it, before calling the model", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["never"])
      const { storage } = makeMemoryStorage()
      const full = Layer.succeed(Storage, {
        ...storage,
        admit: new StorageUnavailable({ message: "The write queue is full", retry_after_seconds: 2 })
      })
      const server = yield* startTestServer({ generator: generator.layer, storage: full })
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "hi" } }))
      expect(response.status).toBe(503)
      expect(response.headers.get("retry-after")).toBe("2")
      expect((yield* json(response)).error.type).toBe("storage_unavailable")
      expect(generator.requests).toHaveLength(0)
    })
  )

  it.scopedLive("answers a model outage with 503, Retry-After and the error body", () =>
    Effect.gen(function* () {
      const generator = failingGenerator(
        new GeneratorUnavailable({ message: "The model server is unavailable", retry_after_seconds: 5 })
      )
      const server = yield* startTestServer({ generator })
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "hi" } }))
      expect(response.status).toBe(503)
      expect(response.headers.get("retry-after")).toBe("5")
      const body = yield* json(response)
      expect(body.error).toMatchObject({ type: "generator_unavailable", retry_after_seconds: 5 })
      expect(body.error.request_id).toBe(response.headers.get("x-request-id"))
    })
  )
})

describe("POST /v1/chat/stream", () => {
  it.scopedLive("streams events as the model produces them, then a final event with counts", () =>
    Effect.gen(function* () {
      const gated = yield* makeGatedGenerator
      const server = yield* startTestServer({ generator: gated.layer })
      yield* gated.emit("Hel")
      const response = yield* call(() =>
        server.request("/v1/chat/stream", { method: "POST", json: { message: "stream please" } })
      )
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toContain("text/event-stream")
      expect(response.headers.get("cache-control")).toBe("no-cache")
      expect(response.headers.get("x-accel-buffering")).toBe("no")
      const events = readSse(response)

      // Each event reaches the client before the model produced the next token: nothing waits for the end.
      const first = JSON.parse((yield* call(events.next))!.data)
      expect(first).toMatchObject({ delta: "Hel", finished: false })
      expect(yield* activeStreams(server)).toBe(1)
      yield* gated.emit("lo")
      expect(JSON.parse((yield* call(events.next))!.data)).toMatchObject({ delta: "lo", finished: false })
      yield* gated.complete(2, 4)
      const last = JSON.parse((yield* call(events.next))!.data)
      expect(last).toEqual({
        session_id: first.session_id,
        delta: "",
        finished: true,
        tokens_used: 6,
        model: "test-model",
        finish_reason: "eos"
      })
      expect(yield* call(events.rest)).toEqual([])
      expect(yield* activeStreams(server)).toBe(0)
    })
  )

  it.scopedLive("POST /v1/chat with stream: true answers with the same event stream", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({ generator: recordingGenerator(["a", "b"]).layer })
      const response = yield* call(() =>
        server.request("/v1/chat", { method: "POST", json: { message: "hi", stream: true } })
      )
      expect(response.headers.get("content-type")).toContain("text/event-stream")
      const chunks = (yield* call(readSse(response).rest)).map((event) => JSON.parse(event.data))
      expect(chunks.map((chunk) => chunk.delta)).toEqual(["a", "b", ""])
      expect(chunks.at(-1)).toMatchObject({ finished: true, tokens_used: 9 })
    })
  )

  it.scopedLive("a failure before the first token keeps its HTTP status", () =>
    Effect.gen(function* () {
      const generator = failingGenerator(new InputTooLong({ message: "The conversation is 9000 tokens; limit 8000" }))
      const server = yield* startTestServer({ generator })
      const response = yield* call(() => server.request("/v1/chat/stream", { method: "POST", json: { message: "hi" } }))
      expect(response.status).toBe(422)
      expect((yield* json(response)).error.type).toBe("input_too_long")
    })
  )

  it.scopedLive("a failure after the stream started arrives as an error event, then the stream ends", () =>
    Effect.gen(function* () {
      const gated = yield* makeGatedGenerator
      const server = yield* startTestServer({ generator: gated.layer })
      yield* gated.emit("partial")
      const response = yield* call(() => server.request("/v1/chat/stream", { method: "POST", json: { message: "hi" } }))
      const events = readSse(response)
      expect(JSON.parse((yield* call(events.next))!.data).delta).toBe("partial")
      yield* gated.fail(new GeneratorUnavailable({ message: "model server went away" }))
      const error = (yield* call(events.next))!
      expect(error.event).toBe("error")
      expect(JSON.parse(error.data).error).toMatchObject({
        type: "generator_unavailable",
        message: "model server went away",
        request_id: response.headers.get("x-request-id")
      })
      expect(yield* call(events.rest)).toEqual([])
    })
  )

  it.scopedLive("sends keep-alive comments while the model is silent", () =>
    Effect.gen(function* () {
      const gated = yield* makeGatedGenerator
      const server = yield* startTestServer({ generator: gated.layer, env: { SSE_KEEPALIVE_MS: "20" } })
      yield* gated.emit("first")
      const response = yield* call(() => server.request("/v1/chat/stream", { method: "POST", json: { message: "hi" } }))
      const events = readSse(response)
      yield* call(events.next)
      // The next event can only be parsed after the comments that precede it were read.
      const readNext = events.next()
      yield* Effect.promise(async () => {
        while (events.comments.length === 0) await new Promise((resolve) => setImmediate(resolve))
      }).pipe(Effect.timeout("5 seconds"))
      expect(events.comments[0]?.trim()).toBe("keep-alive")
      yield* gated.complete(1)
      expect(JSON.parse((yield* call(() => readNext))!.data).finished).toBe(true)
    })
  )

  it.scopedLive("a client disconnect interrupts the generator and keeps the partial reply as interrupted", () =>
    Effect.gen(function* () {
      const gated = yield* makeGatedGenerator
      const server = yield* startTestServer({ generator: gated.layer })
      yield* gated.emit("Once upon")
      const controller = new AbortController()
      const response = yield* call(() =>
        server.request("/v1/chat/stream", {
          method: "POST",
          json: { message: "tell me a story" },
          signal: controller.signal
        })
      )
      const events = readSse(response)
      const first = JSON.parse((yield* call(events.next))!.data)
      controller.abort()
      yield* gated.interrupted.pipe(Effect.timeout("5 seconds"))
      yield* Effect.promise(async () => {
        while ((await Effect.runPromise(activeStreams(server))) !== 0) await new Promise((r) => setTimeout(r, 5))
      }).pipe(Effect.timeout("5 seconds"))

      const transcript = yield* Effect.promise(async () => {
        // The turn is saved by the stream's finalizer, just after the interruption.
        for (;;) {
          const response = await server.request(`/v1/chat/session/${first.session_id}`)
          if (response.status === 200) return (await response.json()) as any
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      }).pipe(Effect.timeout("5 seconds"))
      expect(transcript.messages.map((m: any) => [m.role, m.content, m.interrupted])).toEqual([
        ["user", "tell me a story", false],
        ["assistant", "Once upon", true]
      ])
    })
  )
})

describe("sessions", () => {
  it.scopedLive("GET returns the messages, DELETE clears them, then both answer 404", () =>
    Effect.gen(function* () {
      const server = yield* startTestServer({ generator: recordingGenerator(["fine"]).layer })
      const { session_id } = yield* json(
        yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "how are you?" } }))
      )
      const transcript = yield* json(yield* call(() => server.request(`/v1/chat/session/${session_id}`)))
      expect(transcript.session_id).toBe(session_id)
      expect(transcript.messages.map((m: any) => [m.role, m.content])).toEqual([
        ["user", "how are you?"],
        ["assistant", "fine"]
      ])
      expect(Number.isNaN(Date.parse(transcript.messages[0].created_at))).toBe(false)

      const deleted = yield* call(() => server.request("/v1/chat/session", { method: "DELETE", json: { session_id } }))
      expect(deleted.status).toBe(204)
      expect((yield* call(() => server.request(`/v1/chat/session/${session_id}`))).status).toBe(404)
      const again = yield* call(() => server.request("/v1/chat/session", { method: "DELETE", json: { session_id } }))
      expect(again.status).toBe(404)
      expect((yield* json(again)).error.type).toBe("session_not_found")
    })
  )
})

describe("authentication", () => {
  it.scopedLive("every /v1 endpoint needs the right X-API-Key", () =>
    Effect.gen(function* () {
      // Twelve failures from one address: more than the brute-force limit allows (see RateLimit.http).
      const server = yield* startTestServer({ env: { AUTH_FAILURES_PER_MINUTE: "100" } })
      const id = "6f1c2a47-55e1-4d1e-9d4b-9d3c1b2a7e10"
      const attempts: Array<[string, RequestInit & { json?: unknown }]> = [
        ["/v1/chat", { method: "POST", json: { message: "hi" } }],
        ["/v1/chat/stream", { method: "POST", json: { message: "hi" } }],
        ["/v1/chat/session", { method: "DELETE", json: { session_id: id } }],
        [`/v1/chat/session/${id}`, { method: "GET" }]
      ]
      for (const [path, init] of attempts) {
        for (const headers of [{ "x-api-key": "" }, { "x-api-key": "wrong" }, { "x-api-key": TEST_API_KEY + "x" }]) {
          const response = yield* call(() => server.request(path, { ...init, headers }))
          expect(response.status, `${init.method} ${path} with ${headers["x-api-key"]}`).toBe(401)
          expect((yield* json(response)).error.type).toBe("unauthorized")
        }
      }
      // The key is never written to a log line.
      expect(server.logs.some((line) => line.includes(TEST_API_KEY))).toBe(false)
    })
  )
})
