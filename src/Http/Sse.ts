/** Server-Sent Events responses: the chat streams of both APIs (Nexxi's and the OpenAI-compatible one). */
import { Sse } from "@effect/experimental"
import { HttpServerResponse } from "@effect/platform"
import { Effect, Stream, Take } from "effect"
import { onIdle } from "../lib/idle.js"
import { trackActiveStream } from "../Metrics.js"

/** One event; `data` is sent as it is (JSON, or OpenAI's `[DONE]`). */
export const sseEvent = (data: string, event = "message") =>
  Sse.encoder.write({ _tag: "Event", event, id: undefined, data })

/**
 * A streaming response of already encoded events, counted in the active-streams gauge while it is open, with a
 * keep-alive comment whenever it has been quiet for `keepAliveMs`, so that idle proxies do not close a connection
 * while the model thinks.
 */
export const eventStreamResponse = <E>(events: Stream.Stream<string, E>, keepAliveMs: number) => {
  const body = onIdle(events, keepAliveMs, () => Take.of(": keep-alive\n\n")).pipe(Stream.encodeText)
  return HttpServerResponse.stream(Stream.unwrapScoped(Effect.as(trackActiveStream, body)), {
    contentType: "text/event-stream",
    headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
  })
}
