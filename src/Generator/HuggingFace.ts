/**
 * Hosted mode: the model runs on Hugging Face's inference providers, reached through their router with an
 * `HF_TOKEN`. Same client and resilience as the TGI backend; there is no server of ours to health-check, so readiness
 * follows the circuit breaker.
 */
import { InferenceClient } from "@huggingface/inference"
import { Effect, Option, Redacted } from "effect"
import type { ModelInfo } from "../Generator.js"
import { makeRemoteGenerator, openChatCompletion } from "./ChatCompletions.js"
import type { ResilienceSettings } from "./Resilience.js"

export interface HuggingFaceSettings {
  readonly token: Redacted.Redacted
  readonly model: string
  readonly resilience: ResilienceSettings
  /** Where requests go instead of Hugging Face (tests point it at a local server). */
  readonly fetch?: typeof fetch
}

export const makeHuggingFaceGenerator = (settings: HuggingFaceSettings) =>
  Effect.gen(function* () {
    const client = new InferenceClient(Redacted.value(settings.token))
    const info: ModelInfo = { modelId: settings.model, maxInputTokens: Option.none(), maxTotalTokens: Option.none() }
    yield* Effect.logInfo(`Generator: ${settings.model} on Hugging Face inference providers`)
    return yield* makeRemoteGenerator({
      name: "hf",
      attempt: (request) => openChatCompletion(client, { model: settings.model }, request, settings.fetch),
      info: Effect.succeed(info),
      health: Effect.succeed({ status: "up", kind: "hf", detail: "Hugging Face inference providers" }),
      settings: settings.resilience
    })
  })
