/** Chooses the Generator backend from configuration (`GENERATOR`; by default the echo generator). */
import { Effect, Layer } from "effect"
import { EchoGenerator } from "./Echo.js"

export const GeneratorLive = Layer.unwrapEffect(
  Effect.gen(function* () {
    yield* Effect.logWarning(
      "No model server is configured: replies come from the 'echo' development generator (model: echo)"
    )
    return EchoGenerator
  })
)
