/** `npm run keys -- <command>`: managed API keys from the command line (see `Keys/Cli.ts`). */
import { NodeRuntime } from "@effect/platform-node"
import { main } from "../Keys/Cli.js"

NodeRuntime.runMain(main, { disablePrettyLogger: true, disableErrorReporting: true })
