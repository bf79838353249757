/**
 * Chooses the Generator backend from configuration: `GENERATOR` (tgi | hf | echo | llama); when unset, `llama` if
 * `MODEL_PATH` names a `.gguf` file, else `tgi` if `TGI_URL` is set, else `hf` if `HF_TOKEN` is set, else the echo
 * development generator.
 */
import { Effect, Layer, Option, type Scope } from "effect"
import { AppConfig, StartupError } from "../AppConfig.js"
import { Generator, type GeneratorShape } from "../Generator.js"
import { Safety } from "../Safety.js"
import { redactPii } from "../Safety/Redact.js"
import { makeEcho } from "./Echo.js"
import { makeHuggingFaceGenerator } from "./HuggingFace.js"
import { type ContentCapture, instrumented } from "./Instrumented.js"
import { makeLlamaGenerator } from "./Llama.js"
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

const isGguf = (path: Option.Option<string>) => Option.exists(path, (value) => /\.gguf$/i.test(value.trim()))

const backendOf = (config: Settings) =>
  Option.getOrElse(config.generator, () =>
    isGguf(config.modelPath)
      ? "llama"
      : Option.isSome(config.tgiUrl)
        ? "tgi"
        : Option.isSome(config.hfToken)
          ? "hf"
          : "echo"
  )

/** The configured backend, instrumented (spans and chat metrics) whichever it is. */
export const GeneratorLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* AppConfig
    const resilience = resilienceSettings(config)
    const backend = backendOf(config)
    const make = (): Effect.Effect<GeneratorShape, StartupError, AppConfig | Scope.Scope> => {
      switch (backend) {
        case "tgi":
          return Option.isNone(config.tgiUrl)
            ? Effect.fail(new StartupError({ message: "TGI_URL is required when GENERATOR=tgi" }))
            : makeTgiGenerator({ url: config.tgiUrl.value, apiKey: config.tgiApiKey, resilience })
        case "hf":
          return Option.isNone(config.hfToken)
            ? Effect.fail(new StartupError({ message: "HF_TOKEN is required when GENERATOR=hf" }))
            : makeHuggingFaceGenerator({ token: config.hfToken.value, model: config.hfModelName, resilience })
        case "llama":
          return Option.isNone(config.modelPath)
            ? Effect.fail(new StartupError({ message: "MODEL_PATH (a .gguf file) is required when GENERATOR=llama" }))
            : makeLlamaGenerator({
                modelPath: config.modelPath.value,
                parallel: config.llamaParallel,
                queueSize: config.llamaQueueSize,
                threads: config.llamaThreads,
                contextSize: config.llamaContextSize,
                gpu: config.llamaGpu,
                deadlineMs: config.generatorDeadlineMs
              })
        case "echo":
          return Effect.as(
            Effect.logWarning(
              "No model server is configured: replies come from the 'echo' development generator (model: echo)"
            ),
            makeEcho(config.echoTokenDelayMs)
          )
      }
    }
    // Contents on spans only when asked for, and then through the safety filter's redaction.
    const safety = yield* Effect.serviceOption(Safety)
    const capture = config.otelCaptureContent
      ? Option.some<ContentCapture>((text) =>
          Option.match(safety, {
            onNone: () => Effect.sync(() => redactPii(text).text),
            onSome: (service) => service.redact(text)
          })
        )
      : Option.none()
    return Layer.scoped(
      Generator,
      Effect.map(make(), (generator) => instrumented(generator, backend, capture))
    )
  })
)
