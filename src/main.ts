import { NodeRuntime } from "@effect/platform-node"
import { HttpLive } from "./Http.js"
import { launch } from "./lib/launch.js"

launch(HttpLive).pipe(NodeRuntime.runMain({ disablePrettyLogger: true, disableErrorReporting: true }))
