/**
 * `/v1/chat/stream` read by an independent, spec-following SSE client (the `eventsource` package, a WHATWG
 * EventSource for Node), so that the stream is checked against more than Nexxi's own test parser.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { EventSource } from "eventsource"
import { recordingGenerator } from "./support/generators.js"
import { startTestServer, TEST_API_KEY } from "./support/server.js"

describe("/v1/chat/stream with the eventsource client", () => {
  it.scopedLive("delivers every token in order, then the finished event with the usage", () =>
    Effect.gen(function* () {
      const texts = ["Stream", "ing", " works", " fine", "."]
      const server = yield* startTestServer({ generator: recordingGenerator(texts, 4).layer })
      const chunks = yield* Effect.async<Array<Record<string, unknown>>, Error>((resume) => {
        const received: Array<Record<string, unknown>> = []
        // EventSource speaks GET; its fetch hook sends the chat request instead.
        const source = new EventSource(`${server.url}/v1/chat/stream`, {
          fetch: (input, init) =>
            fetch(input, {
              ...init,
              method: "POST",
              headers: { ...init.headers, "content-type": "application/json", "x-api-key": TEST_API_KEY },
              body: JSON.stringify({ message: "Hi" })
            })
        })
        source.onmessage = (event) => {
          const chunk = JSON.parse(event.data) as Record<string, unknown>
          received.push(chunk)
          if (chunk.finished === true) {
            source.close()
            resume(Effect.succeed(received))
          }
        }
        source.onerror = (event) => {
          source.close()
          resume(Effect.fail(new Error(`EventSource failed: ${event.message ?? "stream ended early"}`)))
        }
        return Effect.sync(() => source.close())
      })
      expect(chunks.slice(0, -1).map((chunk) => chunk.delta)).toEqual(texts)
      expect(new Set(chunks.map((chunk) => chunk.session_id)).size).toBe(1)
      expect(chunks.at(-1)).toMatchObject({ finished: true, tokens_used: 4 + texts.length, finish_reason: "eos" })
    })
  )
})
