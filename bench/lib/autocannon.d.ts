// The part of autocannon 8's API the benchmark uses (the package ships no types).
declare module "autocannon" {
  import type { EventEmitter } from "node:events"

  interface Options {
    readonly url: string
    readonly method?: string
    readonly body?: string
    readonly headers?: Record<string, string>
    readonly connections?: number
    readonly duration?: number
    readonly pipelining?: number
    readonly timeout?: number
  }

  interface Result {
    readonly duration: number
    readonly errors: number
    readonly timeouts: number
    readonly non2xx: number
    readonly "2xx": number
  }

  interface Instance extends EventEmitter {
    on(event: "response", listener: (client: unknown, statusCode: number, bytes: number, ms: number) => void): this
    on(event: string, listener: (...args: Array<unknown>) => void): this
  }

  function autocannon(options: Options, done: (error: Error | null, result: Result) => void): Instance
  export default autocannon
}
