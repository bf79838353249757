/** Nexxi with GENERATOR=tgi in front of the project's TGI-compatible server: what an HTTP client sees. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { applyChatTemplate, tokenize, type TgiServerOptions } from "../dev/tgi/server.js"
import { GeneratorLive } from "../src/Generator/Live.js"
import { startTestServer } from "./support/server.js"
import { readSse } from "./support/sse.js"
import { startTgi } from "./support/tgi.js"

const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)
const json = (response: Response) => call(() => response.json() as Promise<any>)

const nexxiOn = (tgi: TgiServerOptions, env: Record<string, string> = {}) =>
  Effect.gen(function* () {
    const upstream = yield* startTgi(tgi)
    const server = yield* startTestServer({
      generator: GeneratorLive,
      env: { TGI_URL: upstream.url, GENERATOR_RETRY_BASE_MS: "10", ...env }
    })
    return { upstream, server }
  })

const chatCompletions = (upstream: { requests: ReadonlyArray<{ path: string }> }) =>
  upstream.requests.filter((request) => request.path === "/v1/chat/completions") as ReadonlyArray<any>

describe("Nexxi in front of TGI", () => {
  it.scopedLive("a whole reply: TGI's text, TGI's model name, and TGI's token counts", () =>
    Effect.gen(function* () {
      const { upstream, server } = yield* nexxiOn({ reply: "Bonjour !", modelId: "mistralai/Mistral-7B-Instruct-v0.3" })
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "Hello" } }))
      expect(response.status).toBe(200)
      const body = yield* json(response)
      expect(body).toMatchObject({ message: "Bonjour !", model: "mistralai/Mistral-7B-Instruct-v0.3" })
      const sent = chatCompletions(upstream)[0]
      const promptTokens = tokenize(applyChatTemplate(sent.body.messages), false).length
      expect(body.tokens_used).toBe(promptTokens + sent.tokensSent)
    })
  )

  it.scopedLive("a stream: every token TGI sent, in order, then the final event", () =>
    Effect.gen(function* () {
      const reply = "One, two, three, four."
      const { server } = yield* nexxiOn({ reply, tokensPerSecond: 200 })
      const response = yield* call(() =>
        server.request("/v1/chat/stream", { method: "POST", json: { message: "Count" } })
      )
      const chunks = (yield* call(readSse(response).rest)).map((event) => JSON.parse(event.data))
      expect(chunks.slice(0, -1).map((chunk) => chunk.delta)).toEqual(tokenize(reply, false).map((t) => t.text))
      expect(chunks.at(-1)).toMatchObject({ finished: true, finish_reason: "eos" })
    })
  )

  it.scopedLive("TGI down → 503 with Retry-After; /ready says the generator is down", () =>
    Effect.gen(function* () {
      const { server } = yield* nexxiOn({ fault: { kind: "refuse" }, healthy: false })
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "Hello" } }))
      expect(response.status).toBe(503)
      expect(response.headers.get("retry-after")).toBe("1")
      expect((yield* json(response)).error.type).toBe("generator_unavailable")
      const ready = yield* call(() => fetch(server.url + "/ready"))
      expect(ready.status).toBe(503)
      expect((yield* json(ready)).dependencies.generator).toMatchObject({ status: "down", kind: "tgi" })
    })
  )

  it.scopedLive("failed attempts and retries show in /metrics", () =>
    Effect.gen(function* () {
      const { server } = yield* nexxiOn({ fault: { kind: "status", status: 503 } })
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "Hello" } }))
      expect(response.status).toBe(503)
      const metrics = yield* call(() => fetch(server.url + "/metrics").then((r) => r.text()))
      expect(metrics).toMatch(/^nexxi_generator_errors_total\{kind="unavailable"\} [3-9]/m)
      expect(metrics).toMatch(/^nexxi_generator_retries_total [2-9]/m)
      expect(metrics).toMatch(/^nexxi_generator_circuit_state 0$/m)
    })
  )

  it.scopedLive("no first token in time → 504", () =>
    Effect.gen(function* () {
      const { server } = yield* nexxiOn(
        { fault: { kind: "stall", afterTokens: 0 } },
        { GENERATOR_FIRST_TOKEN_TIMEOUT_MS: "200" }
      )
      const response = yield* call(() => server.request("/v1/chat", { method: "POST", json: { message: "Hello" } }))
      expect(response.status).toBe(504)
      expect((yield* json(response)).error.type).toBe("generator_timeout")
    })
  )

  it.scopedLive("the connection to TGI drops mid-stream → an error event after the tokens, nothing repeated", () =>
    Effect.gen(function* () {
      const { upstream, server } = yield* nexxiOn({ fault: { kind: "drop", afterTokens: 4 }, replyTokens: 30 })
      const response = yield* call(() => server.request("/v1/chat/stream", { method: "POST", json: { message: "Go" } }))
      expect(response.status).toBe(200)
      const events = yield* call(readSse(response).rest)
      expect(events.slice(0, 4).every((event) => event.event === undefined)).toBe(true)
      expect(events).toHaveLength(5)
      expect(events[4]!.event).toBe("error")
      expect(JSON.parse(events[4]!.data).error.type).toBe("generator_unavailable")
      expect(chatCompletions(upstream)).toHaveLength(1)
    })
  )

  it.scopedLive("a client that disconnects makes Nexxi abort the request to TGI within 1 s", () =>
    Effect.gen(function* () {
      const { upstream, server } = yield* nexxiOn({ tokensPerSecond: 50, replyTokens: 1000 })
      const controller = new AbortController()
      const response = yield* call(() =>
        server.request("/v1/chat/stream", { method: "POST", json: { message: "Go on" }, signal: controller.signal })
      )
      yield* call(readSse(response).next)
      const abortedAt = Date.now()
      controller.abort()
      const seen = yield* call(() => upstream.waitFor((request) => request.disconnectedAt !== undefined, 1_000))
      expect(seen.disconnectedAt! - abortedAt).toBeLessThan(1_000)
      expect(seen.tokensSent).toBeLessThan(1000)
    })
  )
})
