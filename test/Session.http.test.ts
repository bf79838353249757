/**
 * Sessions end to end, through the real HttpApi: the conversation that reaches the model, the token window, the
 * 422 for a message that can never fit, token counts in GET, and the lock between concurrent requests. Each test
 * runs with the memory store and, with REDIS_URL, with Redis — there as two replicas sharing one Redis, which is
 * what the lock is for. Redis alone: other keys' sessions, and an outage of a redis-server the test controls.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, type Scope } from "effect"
import { applyChatTemplate, tokenize } from "../dev/tgi/server.js"
import type { AppConfig } from "../src/AppConfig.js"
import { Generator } from "../src/Generator.js"
import { makeGatedGenerator, recordingGenerator, tokens } from "./support/generators.js"
import { isolatedPrefix, privateRedisServer } from "./support/redis.js"
import { startTestServer, type TestServer } from "./support/server.js"
import { eventually, serviceUrl } from "./support/services.js"
import { readSse } from "./support/sse.js"

const json = (response: Response) => Effect.promise(() => response.json() as Promise<any>)
const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)

const chat = (server: TestServer, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  call(() => server.request("/v1/chat", { method: "POST", json: body, headers }))

const transcript = (server: TestServer, id: string) =>
  Effect.flatMap(
    call(() => server.request(`/v1/chat/session/${id}`)),
    json
  )

const metricsText = (server: TestServer) =>
  call(() => fetch(server.url + "/metrics").then((response) => response.text()))

const redisUrl = serviceUrl("REDIS_URL", "the Redis session HTTP tests")

interface Store {
  readonly name: string
  /** The settings that select this store, on a key space of the test's own. */
  readonly env: Effect.Effect<Record<string, string>, never, Scope.Scope>
  /** How many servers share the store: replicas of one deployment. */
  readonly replicas: number
}

const stores: ReadonlyArray<Store> = [
  { name: "memory", env: Effect.succeed({}), replicas: 1 },
  ...(redisUrl === undefined
    ? []
    : [
        {
          name: "redis",
          env: Effect.map(isolatedPrefix(redisUrl), (prefix) => ({ REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix })),
          replicas: 2
        }
      ])
]

describe.each(stores)("sessions over HTTP ($name)", (store) => {
  /** The deployment: one server per replica, all on the same store (with memory, one server stands for all). */
  const deployment = (options: {
    readonly env?: Record<string, string>
    readonly generator?: Layer.Layer<Generator, unknown, AppConfig>
  }) =>
    Effect.gen(function* () {
      const env = { ...(yield* store.env), ...options.env }
      const first = yield* startTestServer({ ...options, env })
      const others = yield* Effect.forEach(Array.from({ length: store.replicas - 1 }), () =>
        startTestServer({ ...options, env })
      )
      return [first, ...others, first]
    })

  it.scopedLive("every earlier turn reaches the model with the next message, in order", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["ok"])
      const [a, b] = yield* deployment({ generator: generator.layer })
      const first = yield* json(yield* chat(a!, { message: "My name is Ada" }))
      yield* chat(b!, { session_id: first.session_id, message: "I live in London" })
      const third = yield* chat(a!, { session_id: first.session_id, message: "Who am I?" })
      expect(third.status).toBe(200)
      const prompt = generator.requests[2]!.messages
      expect(prompt.map((m) => [m.role, m.content])).toEqual([
        ["system", "You are Nexxi, a helpful, accurate and concise assistant."],
        ["user", "My name is Ada"],
        ["assistant", "ok"],
        ["user", "I live in London"],
        ["assistant", "ok"],
        ["user", "Who am I?"]
      ])
    })
  )

  it.scopedLive("the window keeps the newest turns that fit MAX_INPUT_TOKENS, to the token", () =>
    Effect.gen(function* () {
      const budget = 150
      const reply = ["Noted", ",", " thank", " you", " for", " telling", " me", "."]
      const generator = recordingGenerator(reply)
      const [server] = yield* deployment({ generator: generator.layer, env: { MAX_INPUT_TOKENS: String(budget) } })
      const { session_id } = yield* json(yield* chat(server!, { message: "Fact number 1 is about whales." }))
      for (let n = 2; n <= 8; n++) {
        expect((yield* chat(server!, { session_id, message: `Fact number ${n} is about whales.` })).status).toBe(200)
      }
      const prompt = generator.requests.at(-1)!.messages
      const history = prompt.slice(1, -1)
      // Whole turns, the newest ones, ending with the turn just before the new message.
      expect(history.length % 2).toBe(0)
      expect(history.length).toBeGreaterThan(0)
      expect(history.length).toBeLessThan(14)
      expect(history.filter((m) => m.role === "user").map((m) => m.content)).toEqual(
        Array.from(
          { length: history.length / 2 },
          (_, i) => `Fact number ${7 - history.length / 2 + 1 + i} is about whales.`
        )
      )
      // Exactly within the budget, with no room for the next older turn, as the model server would count it.
      const exact = (messages: ReadonlyArray<{ role: string; content: string }>) =>
        tokenize(applyChatTemplate(messages), false).length
      expect(exact(prompt)).toBeLessThanOrEqual(budget)
      const olderTurn = [
        { role: "user", content: `Fact number ${7 - history.length / 2} is about whales.` },
        { role: "assistant", content: reply.join("") }
      ]
      expect(exact([prompt[0]!, ...olderTurn, ...prompt.slice(1)])).toBeGreaterThan(budget)
      // The window only shortens the prompt: the session keeps every turn.
      expect((yield* transcript(server!, session_id)).messages).toHaveLength(16)
      expect(yield* metricsText(server!)).toMatch(/^nexxi_session_window_truncations_total [1-9]/m)
      expect(yield* metricsText(server!)).toMatch(/^nexxi_session_window_prompt_tokens_count [1-9]/m)
    })
  )

  it.scopedLive("a message that cannot fit even alone: 422 naming the limit, and the model is never called", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["never"])
      // TGI's rule: max_total_tokens − MAX_NEW_TOKENS = 600 − 512 = 88 tokens for the prompt.
      const [server] = yield* deployment({
        generator: generator.layer,
        env: { MAX_TOTAL_TOKENS: "600", MAX_NEW_TOKENS: "512" }
      })
      const response = yield* chat(server!, { message: "word ".repeat(100) })
      expect(response.status).toBe(422)
      const { error } = yield* json(response)
      expect(error.type).toBe("input_too_long")
      expect(error.message).toContain("at most 88 tokens")
      expect(generator.requests).toHaveLength(0)
    })
  )

  it.scopedLive("the model server's limits apply when no setting overrides them", () =>
    Effect.gen(function* () {
      // Like TGI's /info: max_input_tokens 60.
      const generator = Layer.succeed(
        Generator,
        Generator.make({
          info: Effect.succeed({ modelId: "tgi", maxInputTokens: Option.some(60), maxTotalTokens: Option.some(4096) }),
          stream: () => tokens(["ok"]),
          readiness: Effect.succeed({ status: "up", kind: "test" })
        })
      )
      const fromModel = yield* deployment({ generator })
      const tooLong = { message: "word ".repeat(60) }
      expect((yield* json(yield* chat(fromModel[0]!, tooLong))).error.message).toContain("at most 60 tokens")
      const overridden = yield* deployment({ generator, env: { MAX_INPUT_TOKENS: "50" } })
      expect((yield* json(yield* chat(overridden[0]!, tooLong))).error.message).toContain("at most 50 tokens")
    })
  )

  it.scopedLive("GET shows each message with its exact token count", () =>
    Effect.gen(function* () {
      const [server] = yield* deployment({ generator: recordingGenerator(["Hello", " world!"]).layer })
      const { session_id } = yield* json(yield* chat(server!, { message: "Hello world!" }))
      const { messages } = yield* transcript(server!, session_id)
      // "Hello world!" is [23325, 2294, 29576] in Mistral v0.3's tokenizer.
      expect(messages.map((m: any) => [m.role, m.content, m.tokens, m.interrupted])).toEqual([
        ["user", "Hello world!", 3, false],
        ["assistant", "Hello world!", 3, false]
      ])
    })
  )

  it.scopedLive("a request on a session that is busy waits, then gets 409; the turns never interleave", () =>
    Effect.gen(function* () {
      const gated = yield* makeGatedGenerator
      const [a, b] = yield* deployment({ generator: gated.layer, env: { SESSION_LOCK_TIMEOUT_MS: "150" } })
      yield* gated.emit("first reply")
      yield* gated.complete(1)
      const { session_id } = yield* json(yield* chat(a!, { message: "start" }))

      // A streams a long reply: it holds the session until its last event.
      yield* gated.emit("partial")
      const streaming = yield* call(() =>
        a!.request("/v1/chat/stream", { method: "POST", json: { session_id, message: "A" } })
      )
      const events = readSse(streaming)
      expect(JSON.parse((yield* call(events.next))!.data).delta).toBe("partial")

      const busy = yield* chat(b!, { session_id, message: "B" })
      expect(busy.status).toBe(409)
      const { error } = yield* json(busy)
      expect(error.type).toBe("session_busy")
      expect(error.message).toContain("busy")
      const deleting = yield* call(() => b!.request("/v1/chat/session", { method: "DELETE", json: { session_id } }))
      expect(deleting.status).toBe(409)
      // Reading needs no lock, and sees whole turns only: A's is not there yet.
      expect((yield* transcript(b!, session_id)).messages.map((m: any) => m.content)).toEqual(["start", "first reply"])

      yield* gated.complete(1)
      expect(JSON.parse((yield* call(events.rest)).at(-1)!.data).finished).toBe(true)
      yield* gated.emit("C reply")
      yield* gated.complete(1)
      expect((yield* chat(b!, { session_id, message: "C" })).status).toBe(200)
      const { messages } = yield* transcript(a!, session_id)
      expect(messages.map((m: any) => m.content)).toEqual(["start", "first reply", "A", "partial", "C", "C reply"])
    })
  )

  it.scopedLive("a client that disconnects mid-stream frees the session once its partial turn is saved", () =>
    Effect.gen(function* () {
      const gated = yield* makeGatedGenerator
      const [a, b] = yield* deployment({ generator: gated.layer, env: { SESSION_LOCK_TIMEOUT_MS: "5000" } })
      yield* gated.emit("Once upon")
      const controller = new AbortController()
      const streaming = yield* call(() =>
        a!.request("/v1/chat/stream", { method: "POST", json: { message: "a story" }, signal: controller.signal })
      )
      const { session_id } = JSON.parse((yield* call(readSse(streaming).next))!.data)
      controller.abort()
      yield* gated.interrupted.pipe(Effect.timeout("5 seconds"))
      yield* gated.emit("Next")
      yield* gated.complete(1)
      // Waits for the lock (up to 5 s) rather than failing: the disconnect released it.
      expect((yield* chat(b!, { session_id, message: "go on" })).status).toBe(200)
      const { messages } = yield* transcript(a!, session_id)
      expect(messages.map((m: any) => [m.content, m.interrupted])).toEqual([
        ["a story", false],
        ["Once upon", true],
        ["go on", false],
        ["Next", false]
      ])
    })
  )

  it.scopedLive("concurrent requests on one session are served one after another, each seeing all before it", () =>
    Effect.gen(function* () {
      const generator = recordingGenerator(["ok"])
      const servers = yield* deployment({ generator: generator.layer, env: { SESSION_LOCK_TIMEOUT_MS: "10000" } })
      const { session_id } = yield* json(yield* chat(servers[0]!, { message: "m0" }))
      const count = 6
      const responses = yield* Effect.forEach(
        Array.from({ length: count }, (_, i) => i + 1),
        (n) => chat(servers[n % servers.length]!, { session_id, message: `m${n}` }),
        { concurrency: "unbounded" }
      )
      expect(responses.map((r) => r.status)).toEqual(Array.from({ length: count }, () => 200))
      const saved = (yield* transcript(servers[0]!, session_id)).messages.map((m: any) => m.content)
      expect(saved).toHaveLength(2 * (count + 1))
      // Each request's prompt held exactly the turns saved before it: no two requests saw the same history.
      const seen = generator.requests.slice(1).map((request) => request.messages.slice(1, -1).map((m) => m.content))
      expect(seen.map((history) => history.length).sort((x, y) => x - y)).toEqual(
        Array.from({ length: count }, (_, i) => 2 * (i + 1))
      )
      for (const history of seen) expect(history).toEqual(saved.slice(0, history.length))
    })
  )
})

describe.runIf(redisUrl !== undefined)("sessions over HTTP (redis only)", () => {
  const OTHER_KEY = "other-key-0123456789abcdef0123456789abcd"

  it.scopedLive("another API key gets 404 for a session, as if it did not exist: read, continue or delete", () =>
    Effect.gen(function* () {
      const env = { REDIS_URL: redisUrl!, REDIS_KEY_PREFIX: yield* isolatedPrefix(redisUrl!) }
      const owner = yield* startTestServer({ env, generator: recordingGenerator(["ok"]).layer })
      const other = yield* startTestServer({ env: { ...env, API_KEY: OTHER_KEY } })
      const headers = { "x-api-key": OTHER_KEY }
      const { session_id } = yield* json(yield* chat(owner, { message: "secret" }))
      const attempts = [
        call(() => other.request(`/v1/chat/session/${session_id}`, { headers })),
        chat(other, { session_id, message: "let me in" }, headers),
        call(() => other.request("/v1/chat/session", { method: "DELETE", json: { session_id }, headers }))
      ]
      for (const attempt of attempts) {
        const response = yield* attempt
        expect(response.status).toBe(404)
        expect((yield* json(response)).error.type).toBe("session_not_found")
      }
      expect((yield* transcript(owner, session_id)).messages.map((m: any) => m.content)).toEqual(["secret", "ok"])
    })
  )

  it.scopedLive("Redis stopped: 503 at once and /ready down; Redis back: the same Nexxi serves again", () =>
    Effect.gen(function* () {
      const redis = yield* privateRedisServer
      const server = yield* startTestServer({
        env: { REDIS_URL: redis.url, REDIS_KEY_PREFIX: "nexxi-test:" },
        generator: recordingGenerator(["ok"]).layer
      })
      const { session_id } = yield* json(yield* chat(server, { message: "before" }))
      expect((yield* call(() => fetch(server.url + "/ready"))).status).toBe(200)

      yield* redis.stop
      const outage = [
        chat(server, { message: "new conversation" }),
        chat(server, { session_id, message: "continue" }),
        call(() => server.request(`/v1/chat/session/${session_id}`)),
        call(() => server.request("/v1/chat/session", { method: "DELETE", json: { session_id } }))
      ]
      for (const attempt of outage) {
        const response = yield* attempt.pipe(Effect.timeout("3 seconds"))
        expect(response.status).toBe(503)
        expect(response.headers.get("retry-after")).toBe("2")
        const { error } = yield* json(response)
        expect(error.type).toBe("session_unavailable")
        expect(error.message).toContain("Redis")
      }
      const ready = yield* call(() => fetch(server.url + "/ready"))
      expect(ready.status).toBe(503)
      expect((yield* json(ready)).dependencies.session).toMatchObject({ status: "down", kind: "redis" })
      expect(yield* metricsText(server)).toMatch(/^nexxi_session_store_errors_total\{operation="lock"\} [1-9]/m)

      yield* redis.start
      const back = yield* eventually(chat(server, { message: "after" }), (response) => response.status === 200)
      expect((yield* json(back)).message).toBe("ok")
      expect((yield* call(() => fetch(server.url + "/ready"))).status).toBe(200)
    })
  )
})
