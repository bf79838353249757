/** /metrics after real traffic through Nexxi to the TGI-compatible server, read with a Prometheus parser. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { applyChatTemplate, tokenize } from "../dev/tgi/server.js"
import { GeneratorLive } from "../src/Generator/Live.js"
import { type Family, parseExposition, valueOrZero } from "./support/prometheus.js"
import { startTestServer } from "./support/server.js"
import { readSse } from "./support/sse.js"
import { startTgi } from "./support/tgi.js"

const call = <A>(promise: () => Promise<A>) => Effect.promise(promise)

type Families = ReadonlyMap<string, Family>

/** Read as a strict Prometheus text-format reader does: an invalid line fails the test. */
const scrape = (url: string) =>
  call(() => fetch(url + "/metrics").then((response) => response.text())).pipe(Effect.map(parseExposition))

/** A counter's or gauge's value; for a histogram, its count. 0 while the series does not exist. */
const valueOf = (families: Families, name: string, labels: Record<string, string> = {}) =>
  families.get(name)?.type === "histogram"
    ? valueOrZero(families, `${name}_count`, labels)
    : valueOrZero(families, name, labels)

describe("/metrics after real requests", () => {
  it.scopedLive("counts tokens as the model server counted them, latencies, finish reasons and disconnects", () =>
    Effect.gen(function* () {
      const tgi = yield* startTgi({ reply: "Metrics are fun to count.", tokensPerSecond: 0 })
      const server = yield* startTestServer({ generator: GeneratorLive, env: { TGI_URL: tgi.url } })
      const before = yield* scrape(server.url)

      const post = (path: string, message: string, signal?: AbortSignal) =>
        call(() => server.request(path, { method: "POST", json: { message }, ...(signal ? { signal } : {}) }))
      yield* call(() =>
        post("/v1/chat", "one")
          .pipe(Effect.runPromise)
          .then((r) => r.json())
      )
      yield* call(async () => readSse(await Effect.runPromise(post("/v1/chat/stream", "two"))).rest())

      const after = yield* scrape(server.url)
      const delta = (name: string, labels?: Record<string, string>) =>
        valueOf(after, name, labels) - valueOf(before, name, labels)

      const generations = tgi.requests.filter((r) => r.path === "/v1/chat/completions")
      const sentTokens = generations.reduce((sum, r) => sum + r.tokensSent, 0)
      const promptTokens = generations.reduce(
        (sum, r) => sum + tokenize(applyChatTemplate((r.body as any).messages), false).length,
        0
      )
      expect(delta("nexxi_chat_completion_tokens_total")).toBe(sentTokens)
      expect(delta("nexxi_chat_prompt_tokens_total")).toBe(promptTokens)
      expect(delta("nexxi_chat_time_to_first_token_seconds")).toBe(2)
      expect(delta("nexxi_chat_generation_duration_seconds")).toBe(2)
      expect(delta("nexxi_chat_finish_reasons_total", { reason: "eos" })).toBe(2)
      expect(delta("nexxi_http_requests_total", { route: "/v1/chat", method: "POST", status_class: "2xx" })).toBe(1)
      expect(valueOf(after, "nexxi_chat_active_streams")).toBe(0)
      expect(valueOf(after, "nexxi_process_resident_memory_bytes")).toBeGreaterThan(0)
      const types = Object.fromEntries([...after.values()].map((family) => [family.name, family.type]))
      expect(types).toMatchObject({
        nexxi_chat_completion_tokens_total: "counter",
        nexxi_chat_time_to_first_token_seconds: "histogram",
        nexxi_chat_active_streams: "gauge"
      })

      // A client that goes away mid-stream is counted.
      yield* call(() => tgi.setOptions({ tokensPerSecond: 20, reply: undefined, replyTokens: 200 }))
      const controller = new AbortController()
      const response = yield* post("/v1/chat/stream", "three", controller.signal)
      yield* call(readSse(response).next)
      controller.abort()
      yield* call(() => tgi.waitFor((r) => r.disconnectedAt !== undefined, 2_000))
      yield* Effect.repeat(scrape(server.url), {
        until: (families) =>
          valueOf(families, "nexxi_chat_client_disconnects_total", { route: "/v1/chat/stream" }) -
            valueOf(before, "nexxi_chat_client_disconnects_total", { route: "/v1/chat/stream" }) ===
          1
      }).pipe(Effect.timeout("5 seconds"))
      const final = yield* scrape(server.url)
      expect(valueOf(final, "nexxi_chat_finish_reasons_total", { reason: "interrupted" })).toBeGreaterThanOrEqual(1)
      expect(valueOf(final, "nexxi_chat_active_streams")).toBe(0)
    })
  )
})
