/**
 * Runs the server layer until interrupted. A configuration problem stops start-up with one clear line (naming the
 * variable) and exit code 1, instead of a stack trace.
 */
import { NodeContext } from "@effect/platform-node"
import { PlatformConfigProvider } from "@effect/platform"
import { Cause, ConfigError, Console, Effect, Layer } from "effect"
import { StartupError } from "../AppConfig.js"

const describe = (error: unknown): string | undefined =>
  error instanceof StartupError
    ? error.message
    : ConfigError.isConfigError(error)
      ? `invalid configuration: ${String(error)}`
      : undefined

export const launch = <E>(layer: Layer.Layer<never, E>) =>
  Layer.launch(layer).pipe(
    Effect.provide(PlatformConfigProvider.layerDotEnvAdd(".env").pipe(Layer.provide(NodeContext.layer))),
    Effect.catchAllCause((cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
      const line = describe(Cause.squash(cause))
      return line === undefined
        ? Effect.zipRight(Console.error(Cause.pretty(cause)), Effect.failCause(cause))
        : Effect.zipRight(Console.error(`nexxi: cannot start: ${line}`), Effect.die(new StartupFailed()))
    })
  )

class StartupFailed extends Error {}
