/**
 * One attempt on TGI's Messages API (`POST /v1/chat/completions`, streamed), read with undici's `request` and
 * `eventsource-parser`: each buffer the socket delivers is parsed at once into the events it holds, and they reach
 * the turn together. Through `@huggingface/inference` (fetch's web streams, then an async generator step per event)
 * the same reply cost about three times the CPU per request and twice per token (see Benchmarks in README.md); its
 * behaviour is kept: failures sorted by status and body, an error event inside the stream, `[DONE]`.
 */
import { createParser } from "eventsource-parser"
import { Effect, Option, type Scope } from "effect"
import { request as send } from "undici"
import type { GenerationRequest } from "../Generator.js"
import {
  abortOnClose,
  chatRequestBody,
  type CompletionChunk,
  type EventBatch,
  HttpFailure,
  pullOfBatches,
  traceHeaders
} from "./ChatCompletions.js"
import type { UpstreamPull } from "./Resilience.js"

export interface MessagesEndpoint {
  /** The server's base URL, without a trailing slash. */
  readonly url: string
  /** The `authorization` header, when the server wants a token. */
  readonly authorization: Option.Option<string>
}

const parsedOrText = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

const isErrorEvent = (data: unknown): boolean => typeof data === "object" && data !== null && "error" in data

/** The request is sent on the first pull (within the first-token timeout) and aborted when the scope closes. */
export const openMessagesApi = (
  endpoint: MessagesEndpoint,
  request: GenerationRequest
): Effect.Effect<UpstreamPull, never, Scope.Scope> =>
  Effect.gen(function* () {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "text/event-stream",
      ...Option.match(endpoint.authorization, { onNone: () => ({}), onSome: (value) => ({ authorization: value }) }),
      ...(yield* traceHeaders)
    }
    const abort = yield* abortOnClose
    // TGI serves one model and ignores the name; the Messages API still wants one.
    const body = JSON.stringify({ ...chatRequestBody({ model: "tgi" }, request), stream: true })

    let events: Array<CompletionChunk> = []
    let failure: HttpFailure | undefined
    const parser = createParser({
      onEvent: ({ data }) => {
        if (data === "[DONE]" || failure !== undefined) return
        const parsed = JSON.parse(data) as unknown
        // The status is already 200: TGI tells a failure during generation as an event.
        if (isErrorEvent(parsed)) failure = new HttpFailure(200, parsed)
        else events.push(parsed as CompletionChunk)
      }
    })
    const decoder = new TextDecoder()

    const start = async () => {
      const response = await send(`${endpoint.url}/v1/chat/completions`, {
        method: "POST",
        headers,
        body,
        signal: abort.signal
      })
      if (response.statusCode >= 400) {
        throw new HttpFailure(response.statusCode, parsedOrText(await response.body.text()))
      }
      const type = String(response.headers["content-type"] ?? "")
      if (!type.startsWith("text/event-stream")) {
        await response.body.dump()
        throw new HttpFailure(response.statusCode, `the server answered ${type || "no content type"}, not events`)
      }
      return response.body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>
    }

    let reading: AsyncIterator<Uint8Array> | undefined
    let finished = false
    const take = (done: boolean): EventBatch => {
      const batch = { events, done }
      events = []
      return batch
    }
    const read = async (): Promise<EventBatch | undefined> => {
      if (failure !== undefined) throw failure
      if (finished) return undefined
      reading ??= await start()
      for (;;) {
        const next = await reading.next()
        if (next.done) {
          finished = true
          return take(true)
        }
        parser.feed(decoder.decode(next.value, { stream: true }))
        // Events before an error event go first; the next read fails.
        if (events.length > 0) return take(false)
        if (failure !== undefined) throw failure
      }
    }
    return pullOfBatches(read, abort.ended)
  })
