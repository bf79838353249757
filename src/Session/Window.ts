/**
 * The sliding window: which earlier turns of a conversation go into the prompt. The prompt is the system prompt,
 * then the newest turns that fit the budget, then the new message; the oldest turns drop out first, and a turn
 * (a user message and its reply) is kept or dropped whole. Pure arithmetic on token counts counted once, when
 * each message was saved.
 */
import { Option } from "effect"
import { templateTokens } from "../Tokenizer.js"

/**
 * The context of Mistral-7B-Instruct-v0.3, used when neither the model server nor the configuration states a limit
 * (the echo generator states none): prompts then get what the model itself could take.
 */
export const DEFAULT_CONTEXT_TOKENS = 32_768

export interface ContextLimits {
  readonly maxInputTokens: Option.Option<number>
  readonly maxTotalTokens: Option.Option<number>
  readonly maxNewTokens: number
}

/**
 * The most prompt tokens a generation may use, by TGI's rule: `min(max_input_tokens, max_total_tokens −
 * max_new_tokens)`. An unknown limit does not constrain, unless both are unknown: then the model's own context
 * (`DEFAULT_CONTEXT_TOKENS`) is the total.
 */
export const promptBudget = ({ maxInputTokens, maxTotalTokens, maxNewTokens }: ContextLimits): number => {
  const total =
    Option.isNone(maxInputTokens) && Option.isNone(maxTotalTokens)
      ? Option.some(DEFAULT_CONTEXT_TOKENS)
      : maxTotalTokens
  return Math.min(
    Option.getOrElse(maxInputTokens, () => Infinity),
    Option.getOrElse(
      Option.map(total, (tokens) => tokens - maxNewTokens),
      () => Infinity
    )
  )
}

/** One earlier turn, as far as the window cares: the content tokens of its user message and of its reply. */
export interface WindowTurn {
  readonly user: { readonly tokens: number }
  readonly assistant: { readonly tokens: number }
}

const turnTokens = (turn: WindowTurn) => templateTokens.turn + turn.user.tokens + turn.assistant.tokens

/** The tokens of the whole prompt: the template, the turns, and the last message with the system prompt. */
export const promptTokens = (turns: ReadonlyArray<WindowTurn>, lastMessageTokens: number): number =>
  turns.reduce(
    (sum, turn) => sum + turnTokens(turn),
    templateTokens.start + templateTokens.lastMessage + lastMessageTokens
  )

export interface Window<T> {
  /** The newest turns that fit, oldest first. */
  readonly turns: ReadonlyArray<T>
  /** How many older turns were left out. */
  readonly dropped: number
  readonly promptTokens: number
}

/**
 * The longest run of newest turns whose prompt stays within `budget` tokens. A turn that does not fit ends the
 * window, even if an older, shorter one would fit: the model must see a contiguous conversation. When the last
 * message does not fit even alone the window is empty and over budget: the caller rejects the message first.
 */
export const slidingWindow = <T extends WindowTurn>(
  turns: ReadonlyArray<T>,
  lastMessageTokens: number,
  budget: number
): Window<T> => {
  let tokens = promptTokens([], lastMessageTokens)
  let start = turns.length
  while (start > 0 && tokens + turnTokens(turns[start - 1]!) <= budget) {
    start -= 1
    tokens += turnTokens(turns[start]!)
  }
  return { turns: turns.slice(start), dropped: start, promptTokens: tokens }
}
