/**
 * One generation over an OpenAI-style chat completions stream — TGI's Messages API (`Generator/MessagesApi.ts`), or
 * Hugging Face's inference router through `@huggingface/inference` (here). The server applies the model's chat
 * template; its usage report gives the token counts. Closing an attempt's scope aborts its HTTP request, which makes
 * TGI stop generating. What both readers share is here: the request body, the token accounting, how failures are
 * sorted, and the generator with its resilience policy.
 */
import type { InferenceClient } from "@huggingface/inference"
import { InferenceClientProviderApiError } from "@huggingface/inference"
import { HttpTraceContext } from "@effect/platform"
import { Chunk, Clock, Effect, Option, type Scope } from "effect"
import type { DependencyHealth } from "../Domain/Health.js"
import {
  type FinishReason,
  GenerationChunk,
  type GenerationRequest,
  Generator,
  type GeneratorError,
  type ModelInfo
} from "../Generator.js"
import {
  makeCircuitBreaker,
  resilientPull,
  type ResilienceSettings,
  UpstreamError,
  type UpstreamPull
} from "./Resilience.js"
import { acquireSync } from "../lib/finalizer.js"

/** The model the request names: the router's choice of model; TGI serves one and ignores it. */
export interface ChatTarget {
  readonly model: string
}

export interface CompletionChunk {
  readonly choices?: ReadonlyArray<{
    readonly delta?: { readonly content?: string | null }
    readonly finish_reason?: string | null
  }>
  readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number } | null
}

const finishReasonOf = (reason: string | undefined): FinishReason =>
  reason === "length" ? "length" : reason === "stop_sequence" ? "stop" : reason === undefined ? "interrupted" : "eos"

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EPIPE"])

/** undici's own errors carry the code; `fetch` wraps them, with the code in the cause. */
const networkCode = (error: unknown): string | undefined => {
  const own = (error as { code?: unknown } | undefined)?.code
  if (typeof own === "string") return own
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause
  return typeof cause?.code === "string" ? cause.code : undefined
}

const TOKEN_LIMIT = /must have less than|must be <=|too long|context length|maximum context/i

/** TGI's error text, from an error body (`{error: "..."}` or the Messages API's `{error: {message}}`). */
const upstreamMessage = (body: unknown): string => {
  const error = (body as { error?: unknown } | null)?.error
  if (typeof error === "string") return error
  const message = (error as { message?: unknown } | undefined)?.message
  return typeof message === "string" ? message : typeof body === "string" ? body : "unknown error"
}

/** An error status from the server, or an error event in its stream (status 200), with its body. */
export class HttpFailure {
  constructor(
    readonly status: number,
    readonly body: unknown
  ) {}
}

/** Sorts a failure of a request to the model server into what Nexxi does about it. */
export const classifyUpstreamError = (error: unknown): UpstreamError => {
  const http =
    error instanceof InferenceClientProviderApiError
      ? new HttpFailure(error.httpResponse.status, error.httpResponse.body)
      : error instanceof HttpFailure
        ? error
        : undefined
  if (http !== undefined) {
    const { status, body } = http
    const text = upstreamMessage(body)
    if (status === 429 || /overloaded/i.test(text)) {
      return new UpstreamError({ kind: "overloaded", message: "The model server is overloaded" })
    }
    if (status === 502 || status === 503 || status === 504) {
      return new UpstreamError({ kind: "unavailable", message: `The model server is unavailable (HTTP ${status})` })
    }
    if (TOKEN_LIMIT.test(text)) return new UpstreamError({ kind: "input_too_long", message: text })
    if (status === 401 || status === 403) {
      return new UpstreamError({ kind: "failed", message: "The model server refused Nexxi's credentials" })
    }
    return new UpstreamError({ kind: "failed", message: `The model server failed: ${text}` })
  }
  const code = networkCode(error)
  // Nexxi's own abort (the attempt's scope closed): nothing to retry, and the reason is told by whoever closed it.
  if (code === "UND_ERR_ABORTED" || (error instanceof Error && error.name === "AbortError")) {
    return new UpstreamError({ kind: "failed", message: "The request to the model server was aborted" })
  }
  if ((code !== undefined && (NETWORK_CODES.has(code) || code.startsWith("UND_ERR"))) || isBrokenFetch(error)) {
    return new UpstreamError({
      kind: "unavailable",
      message: `The model server cannot be reached${code === undefined ? "" : ` (${code})`}`
    })
  }
  return new UpstreamError({ kind: "failed", message: "The model server sent a response Nexxi cannot read" })
}

/** undici reports a refused or broken connection as a TypeError ("fetch failed", "terminated"). */
const isBrokenFetch = (error: unknown) =>
  error instanceof TypeError && (error.message === "fetch failed" || error.message === "terminated")

/** The W3C `traceparent` of the current span, so that the trace continues into the model server's spans. */
export const traceHeaders = Effect.map(Effect.option(Effect.currentSpan), (span) =>
  Option.match(span, {
    onNone: (): Record<string, string> => ({}),
    onSome: (current) => ({ traceparent: HttpTraceContext.toHeaders(current).traceparent! })
  })
)

/** The request's fields: the same for TGI and the router (`stream: true` is added by whoever sends it). */
export const chatRequestBody = (target: ChatTarget, request: GenerationRequest) => ({
  ...target,
  messages: request.messages.map(({ role, content }) => ({ role, content })),
  max_tokens: request.maxNewTokens,
  stream_options: { include_usage: true },
  ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
  // top_p 1 keeps every token, as no top_p does; TGI's validation refuses 1 itself.
  ...(request.topP === undefined || request.topP >= 1 ? {} : { top_p: request.topP }),
  ...(request.stop === undefined ? {} : { stop: [...request.stop] }),
  ...(request.seed === undefined ? {} : { seed: request.seed })
})

/** Events read from the server since the last pull; `done` once its stream has ended. */
export interface EventBatch {
  readonly events: ReadonlyArray<CompletionChunk>
  readonly done: boolean
}

/**
 * The pull of one attempt over a reader of event batches (`undefined` after the last): each batch becomes its
 * tokens, and the last ends with the `Completed` record, built from the server's own counts. `onEnd` runs once the
 * server's stream was read to its end (nothing is left to abort).
 */
export const pullOfBatches = (read: () => Promise<EventBatch | undefined>, onEnd: () => void): UpstreamPull => {
  let finishReason: string | undefined
  let usage: CompletionChunk["usage"]
  let tokensSeen = 0
  const tokensOf = (events: ReadonlyArray<CompletionChunk>) => {
    const tokens: Array<GenerationChunk> = []
    for (const event of events) {
      const choice = event.choices?.[0]
      finishReason = choice?.finish_reason ?? finishReason
      usage = event.usage ?? usage
      if (choice !== undefined) tokensSeen++
      const text = choice?.delta?.content ?? ""
      if (text.length > 0) tokens.push(GenerationChunk.Token({ text }))
    }
    return tokens
  }
  return Effect.tryPromise({ try: read, catch: classifyUpstreamError }).pipe(
    Effect.mapError(Option.some),
    Effect.flatMap((batch) => {
      if (batch === undefined) return Effect.fail(Option.none())
      const tokens = tokensOf(batch.events)
      if (batch.done) {
        onEnd()
        tokens.push(
          GenerationChunk.Completed({
            finishReason: finishReasonOf(finishReason),
            promptTokens: usage?.prompt_tokens ?? 0,
            completionTokens: usage?.completion_tokens ?? tokensSeen
          })
        )
      }
      return Effect.succeed(Chunk.unsafeFromArray(tokens))
    })
  )
}

/**
 * An abort signal for the attempt's scope: closing the scope aborts the request, unless its response was read to
 * its end (`ended`), which needs no abort (an abort costs a `DOMException` and undici's clean-up).
 */
export const abortOnClose = Effect.gen(function* () {
  let ended = false
  const controller = yield* acquireSync(
    () => new AbortController(),
    (controller) => Effect.sync(() => ended || controller.abort())
  )
  return { signal: controller.signal, ended: () => void (ended = true) }
})

/** One attempt through `@huggingface/inference` (the router); the request is sent on the first pull. */
export const openChatCompletion = (
  client: InferenceClient,
  target: ChatTarget,
  request: GenerationRequest,
  baseFetch: typeof fetch = fetch
): Effect.Effect<UpstreamPull, never, Scope.Scope> =>
  Effect.gen(function* () {
    const headers = yield* traceHeaders
    const tracedFetch: typeof fetch = (input, init) =>
      baseFetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } })
    // Breaking out of the async iterator leaves the connection open; only aborting the signal closes it.
    const abort = yield* abortOnClose
    const chunks = client.chatCompletionStream(chatRequestBody(target, request), {
      signal: abort.signal,
      retry_on_error: false,
      fetch: tracedFetch
    }) as AsyncIterable<CompletionChunk>
    // Pulled by hand rather than with Stream.fromAsyncIterable: ending that stream awaits the iterator's
    // `return()`, which waits for the pending read of a stalled server forever; aborting the signal ends both.
    return pullOfBatches(readInBatches(chunks[Symbol.asyncIterator]()).next, abort.ended)
  })

/** Marks a read that is not ready within this batch. */
const LATER: unique symbol = Symbol("later")

/** Events of one pull: never more, so that a fast server's reply still reaches the client in steps. */
const MAX_BATCH = 256

/**
 * Reads an async iterator in batches: the next event, then every event already parsed from what the socket has
 * received (those resolve before the next turn of the event loop). A reply that arrives at once then costs one pull
 * through the stream rather than one per token; a paced one still comes token by token. `next` resolves with
 * `undefined` once the last batch (the one marked `done`) has been read.
 */
const readInBatches = <A>(iterator: AsyncIterator<A>) => {
  let pending: Promise<IteratorResult<A>> | undefined
  let finished = false
  const next = async (): Promise<{ readonly events: ReadonlyArray<A>; readonly done: boolean } | undefined> => {
    if (finished) return undefined
    const events: Array<A> = []
    let result = await (pending ?? iterator.next())
    pending = undefined
    const later = new Promise<typeof LATER>((resolve) => setImmediate(resolve, LATER))
    while (!result.done) {
      events.push(result.value)
      if (events.length >= MAX_BATCH) return { events, done: false }
      const read = iterator.next()
      // Not parsed yet, or failed: the events read so far go first, and the next pull waits for (or fails with)
      // this read. Handled here, so that a read that fails after its stream was abandoned is not reported.
      const ready = await Promise.race([read, later]).catch((): typeof LATER => LATER)
      if (ready === LATER) {
        read.catch(() => {})
        pending = read
        return { events, done: false }
      }
      result = ready
    }
    finished = true
    return { events, done: true }
  }
  return { next }
}

/** A generator on a chat completions server: the resilience policy around one attempt (`attempt`). */
export const makeRemoteGenerator = (options: {
  readonly name: string
  readonly attempt: (request: GenerationRequest) => Effect.Effect<UpstreamPull, never, Scope.Scope>
  readonly info: Effect.Effect<ModelInfo, GeneratorError>
  /** The server's own health, when it has an endpoint for it. */
  readonly health: Effect.Effect<DependencyHealth>
  readonly settings: ResilienceSettings
}) =>
  Effect.gen(function* () {
    const breaker = yield* makeCircuitBreaker(
      options.settings.breakerThreshold,
      options.settings.breakerCooldownMs,
      options.name
    )
    const readiness = Effect.flatMap(Effect.zip(breaker.state, Clock.currentTimeMillis), ([state, now]) =>
      state._tag === "Open" && now < state.until
        ? Effect.succeed<DependencyHealth>({
            status: "down",
            kind: options.name,
            detail: "circuit open: the model server keeps failing"
          })
        : options.health
    )
    return Generator.make({
      info: options.info,
      readiness,
      open: (request) => resilientPull(options.attempt(request), options.settings, breaker)
    })
  })
