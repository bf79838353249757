/**
 * Traces as an operator inspects them: one trace per request, continuing the client's `traceparent`, with the
 * generation's GenAI attributes, and continued into the model server.
 */
import { describe, expect, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import { GeneratorLive } from "../src/Generator/Live.js"
import { tracingWith } from "../src/Tracing.js"
import { startTestServer } from "./support/server.js"
import { startTgi } from "./support/tgi.js"

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
const CLIENT_SPAN = "00f067aa0ba902b7"

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId

describe("traces", () => {
  it.scopedLive("a chat turn is one trace under the client's span, with GenAI attributes, continued into TGI", () =>
    Effect.gen(function* () {
      const exporter = new InMemorySpanExporter()
      const tgi = yield* startTgi({ reply: "Traced reply", modelId: "mistralai/Mistral-7B-Instruct-v0.3" })
      const server = yield* startTestServer({
        generator: GeneratorLive,
        env: { TGI_URL: tgi.url },
        tracing: tracingWith("nexxi-test", new SimpleSpanProcessor(exporter)) as Layer.Layer<never>
      })
      const response = yield* Effect.promise(() =>
        server.request("/v1/chat", {
          method: "POST",
          json: { message: "Hello" },
          headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` }
        })
      )
      expect(response.status).toBe(200)
      // Spans end when the response is done; wait for the HTTP span to be exported.
      const spans = yield* Effect.promise(async () => {
        for (;;) {
          const finished = exporter.getFinishedSpans()
          if (finished.some((span) => span.name.startsWith("http.server"))) return finished
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      }).pipe(Effect.timeout("5 seconds"))

      expect(spans.every((span) => span.spanContext().traceId === TRACE_ID)).toBe(true)
      const byName = (name: string) => spans.find((span) => span.name === name)!
      const http = spans.find((span) => span.name.startsWith("http.server"))!
      expect(parentOf(http)).toBe(CLIENT_SPAN)
      const reply = byName("Chat.reply")
      expect(parentOf(reply)).toBe(http.spanContext().spanId)
      const prepare = byName("Chat.prepare")
      expect(parentOf(prepare)).toBe(reply.spanContext().spanId)
      const save = byName("Chat.saveTurn")
      expect(parentOf(save)).toBe(reply.spanContext().spanId)
      // Each step of the request path has its own span.
      expect(parentOf(byName("Auth.apiKey"))).toBe(http.spanContext().spanId)
      expect(parentOf(byName("Safety.inspect"))).toBe(prepare.spanContext().spanId)
      expect(parentOf(byName("Session.lock"))).toBe(prepare.spanContext().spanId)
      expect(parentOf(byName("Session.save"))).toBe(save.spanContext().spanId)
      expect(parentOf(byName("Storage.recordTurn"))).toBe(save.spanContext().spanId)

      const generation = byName("chat mistralai/Mistral-7B-Instruct-v0.3")
      expect(parentOf(generation)).toBe(reply.spanContext().spanId)
      expect(generation.attributes).toMatchObject({
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "tgi",
        "gen_ai.request.model": "mistralai/Mistral-7B-Instruct-v0.3",
        "gen_ai.request.max_tokens": 512,
        "gen_ai.response.finish_reasons": ["eos"]
      })
      const sent = tgi.requests.find((r) => r.path === "/v1/chat/completions")!
      expect(generation.attributes["gen_ai.usage.output_tokens"]).toBe(sent.tokensSent)
      expect(generation.attributes["gen_ai.usage.input_tokens"]).toBeGreaterThan(0)
      expect(generation.events.map((event) => event.name)).toContain("gen_ai.first_token")
      // Message contents stay off spans unless OTEL_CAPTURE_CONTENT=true.
      expect(JSON.stringify(spans.map((span) => span.attributes))).not.toContain("Traced reply")

      // Log lines carry the ids of the span they were written in.
      const access = server.logs.map((line) => JSON.parse(line)).find((line) => line.route === "/v1/chat")
      expect(access).toMatchObject({ trace_id: TRACE_ID, span_id: http.spanContext().spanId })

      // The request to TGI carries the trace on, as a child of the generation span.
      expect(sent.headers.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`))
      const tgiParent = String(sent.headers.traceparent).split("-")[2]
      expect(spans.find((span) => span.spanContext().spanId === tgiParent)?.name).toBe(generation.name)
    })
  )
})

describe("content on spans", () => {
  it.scopedLive("only with OTEL_CAPTURE_CONTENT=true, and then redacted", () =>
    Effect.gen(function* () {
      const exporter = new InMemorySpanExporter()
      const tgi = yield* startTgi({ reply: "Write to me at grace@example.org" })
      const server = yield* startTestServer({
        generator: GeneratorLive,
        env: { TGI_URL: tgi.url, OTEL_CAPTURE_CONTENT: "true" },
        tracing: tracingWith("nexxi-test", new SimpleSpanProcessor(exporter)) as Layer.Layer<never>
      })
      const response = yield* Effect.promise(() =>
        server.request("/v1/chat", { method: "POST", json: { message: "My address is ada@example.org" } })
      )
      expect(response.status).toBe(200)
      const generation = yield* Effect.promise(async () => {
        for (;;) {
          const span = exporter.getFinishedSpans().find((s) => s.name.startsWith("chat "))
          if (span) return span
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      }).pipe(Effect.timeout("5 seconds"))
      const prompt = String(generation.attributes["gen_ai.prompt"])
      expect(prompt).toContain("My address is [EMAIL]")
      expect(generation.attributes["gen_ai.completion"]).toBe("Write to me at [EMAIL]")
      expect(JSON.stringify(generation.attributes)).not.toContain("@example.org")
    })
  )
})
