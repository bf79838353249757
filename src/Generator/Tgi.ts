/**
 * The TGI backend: Mistral-7B-Instruct (or any model) served by Hugging Face Text Generation Inference. Tokens come
 * from TGI's Messages API (`MessagesApi.ts`), so TGI applies the model's chat template; the model name and context
 * limits come from its `/info`, readiness from its `/health`.
 */
import { Duration, Effect, Option, Redacted } from "effect"
import type { DependencyHealth } from "../Domain/Health.js"
import type { ModelInfo } from "../Generator.js"
import { makeRemoteGenerator } from "./ChatCompletions.js"
import { openMessagesApi } from "./MessagesApi.js"
import {
  isTransient,
  toClientError,
  type ResilienceSettings,
  UpstreamError,
  upstreamRetryPolicy
} from "./Resilience.js"

export interface TgiSettings {
  readonly url: string
  readonly apiKey: Option.Option<Redacted.Redacted>
  readonly resilience: ResilienceSettings
}

/** Health and info are small calls: they must answer quickly or count as down. */
const PROBE_TIMEOUT = Duration.seconds(2)
/** `/ready` may be polled often by load balancers; TGI is asked at most this often. */
const HEALTH_CACHE = Duration.seconds(3)

interface TgiInfo {
  readonly model_id: string
  readonly max_input_tokens?: number
  readonly max_total_tokens?: number
}

const bearer = (key: Redacted.Redacted) => `Bearer ${Redacted.value(key)}`

const get = (url: string, apiKey: Option.Option<Redacted.Redacted>) =>
  Effect.tryPromise({
    try: (signal) =>
      fetch(url, {
        signal,
        headers: Option.match(apiKey, {
          onNone: () => ({}),
          onSome: (key) => ({ authorization: bearer(key) })
        })
      }),
    catch: (cause) =>
      new UpstreamError({ kind: "unavailable", message: `The model server cannot be reached: ${String(cause)}` })
  }).pipe(
    Effect.timeoutFail({
      duration: PROBE_TIMEOUT,
      onTimeout: () => new UpstreamError({ kind: "timeout", message: `The model server did not answer ${url} in time` })
    })
  )

export const makeTgiGenerator = (settings: TgiSettings) =>
  Effect.gen(function* () {
    const base = settings.url.replace(/\/+$/, "")

    const fetchInfo = get(`${base}/info`, settings.apiKey).pipe(
      Effect.flatMap((response) =>
        response.ok
          ? Effect.promise(() => response.json() as Promise<TgiInfo>)
          : Effect.fail(
              new UpstreamError({ kind: "unavailable", message: `TGI /info answered HTTP ${response.status}` })
            )
      ),
      Effect.map((info): ModelInfo => ({
        modelId: info.model_id,
        maxInputTokens: Option.fromNullable(info.max_input_tokens),
        maxTotalTokens: Option.fromNullable(info.max_total_tokens)
      }))
    )
    // The model is fixed for the life of a TGI process: ask until it answers once, then remember.
    let known: Option.Option<ModelInfo> = Option.none()
    const info = Effect.suspend(() =>
      Option.match(known, {
        onSome: Effect.succeed,
        onNone: () =>
          fetchInfo.pipe(
            Effect.retry({ schedule: upstreamRetryPolicy(settings.resilience), while: isTransient }),
            Effect.tap((fetched) => Effect.sync(() => (known = Option.some(fetched))))
          )
      })
    ).pipe(Effect.mapError(toClientError))

    const health = yield* get(`${base}/health`, settings.apiKey).pipe(
      Effect.map((response): DependencyHealth =>
        response.ok
          ? { status: "up", kind: "tgi" }
          : { status: "down", kind: "tgi", detail: `TGI /health answered HTTP ${response.status}` }
      ),
      Effect.catchAll((error) =>
        Effect.succeed<DependencyHealth>({ status: "down", kind: "tgi", detail: error.message })
      ),
      Effect.cachedWithTTL(HEALTH_CACHE)
    )

    const endpoint = { url: base, authorization: Option.map(settings.apiKey, bearer) }
    const generator = yield* makeRemoteGenerator({
      name: "tgi",
      attempt: (request) => openMessagesApi(endpoint, request),
      info,
      health,
      settings: settings.resilience
    })

    // Say at start-up which model answers, without making start-up wait for (or fail on) the model server.
    yield* info.pipe(
      Effect.tap((model) => Effect.logInfo(`Generator: TGI at ${base} serving ${model.modelId}`)),
      Effect.catchAll(() => Effect.logWarning(`Generator: TGI at ${base} does not answer yet; /ready says so`)),
      Effect.forkScoped
    )
    return generator
  })
