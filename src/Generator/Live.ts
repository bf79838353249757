/**
 * Chooses the Generator backend from configuration: `GENERATOR` (tgi | hf | echo); when unset, `tgi` if `TGI_URL`
 * is set, else `hf` if `HF_TOKEN` is set, else the echo development generator.
 */
import { Effect, Layer, Option } from "effect"
import { AppConfig, StartupError } from "../AppConfig.js"
import { Generator } from "../Generator.js"
import { EchoGenerator } from "./Echo.js"
import { makeHuggingFaceGenerator } from "./HuggingFace.js"
import type { ResilienceSettings } from "./Resilience.js"
import { makeTgiGenerator } from "./Tgi.js"

type Settings = typeof AppConfig.Service

export const resilienceSettings = (config: Settings): ResilienceSettings => ({
  maxRetries: config.generatorMaxRetries,
  retryBaseMs: config.generatorRetryBaseMs,
  retryBudgetMs: config.generatorRetryBudgetMs,
  firstTokenTimeoutMs: config.generatorFirstTokenTimeoutMs,
  idleTimeoutMs: config.generatorIdleTimeoutMs,
  deadlineMs: config.generatorDeadlineMs,
  breakerThreshold: config.generatorBreakerThreshold,
  breakerCooldownMs: config.generatorBreakerCooldownMs
})

const backendOf = (config: Settings) =>
  Option.getOrElse(config.generator, () =>
    Option.isSome(config.tgiUrl) ? "tgi" : Option.isSome(config.hfToken) ? "hf" : "echo"
  )

export const GeneratorLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* AppConfig
    const resilience = resilienceSettings(config)
    switch (backendOf(config)) {
      case "tgi":
        return Option.isNone(config.tgiUrl)
          ? Layer.fail(new StartupError({ message: "TGI_URL is required when GENERATOR=tgi" }))
          : Layer.scoped(
              Generator,
              makeTgiGenerator({ url: config.tgiUrl.value, apiKey: config.tgiApiKey, resilience })
            )
      case "hf":
        return Option.isNone(config.hfToken)
          ? Layer.fail(new StartupError({ message: "HF_TOKEN is required when GENERATOR=hf" }))
          : Layer.effect(
              Generator,
              makeHuggingFaceGenerator({ token: config.hfToken.value, model: config.hfModelName, resilience })
            )
      case "echo":
        yield* Effect.logWarning(
          "No model server is configured: replies come from the 'echo' development generator (model: echo)"
        )
        return EchoGenerator
    }
  })
)
