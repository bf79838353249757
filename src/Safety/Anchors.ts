/**
 * Which of many literal strings occur in a text, and where, in one pass: an Aho-Corasick automaton compiled to a
 * dense transition table, so the scan costs one table lookup per character whatever the number of strings. Detectors
 * use it to try a pattern only where a word it starts with occurs: most messages contain few of them.
 */

/**
 * Where each anchor occurs, by anchor index (`undefined` when it does not): start positions encoded as
 * `position * 2 + 1` when the anchor starts a word (preceded by a character other than a-z, A-Z, 0-9 or "_", or
 * at the start of the text) and `position * 2` otherwise. See `startsWord` and `positionOf`.
 */
export type Occurrences = ReadonlyArray<ReadonlyArray<number> | undefined>

export const startsWord = (occurrence: number) => (occurrence & 1) === 1
export const positionOf = (occurrence: number) => occurrence >>> 1

export interface Anchor {
  readonly text: string
  /** Record only occurrences that start a word ("i" in "i will", not in "this"): far fewer to try. */
  readonly wordStartOnly: boolean
}

export interface AnchorScanner {
  readonly scan: (text: string) => Occurrences
  /** The index of an anchor in `Occurrences` (-1 when it is not one). */
  readonly index: (anchor: string) => number
}

const isWordCode = (code: number) =>
  (code >= 97 && code <= 122) || (code >= 48 && code <= 57) || code === 95 || (code >= 65 && code <= 90)

/** The automaton, writing occurrences into `found` (indexed like `anchors`). */
const makeAhoCorasick = (
  anchors: ReadonlyArray<string>,
  wordStartOnly: ReadonlyArray<boolean>,
  caseInsensitive: boolean
) => {
  // The alphabet: one column per UTF-16 code unit used by an anchor, column 0 for every other one.
  const columnOf = new Map<number, number>()
  for (const anchor of anchors) {
    for (let position = 0; position < anchor.length; position++) {
      const code = anchor.charCodeAt(position)
      if (!columnOf.has(code)) columnOf.set(code, columnOf.size + 1)
    }
  }
  const columns = columnOf.size + 1
  const asciiColumn = new Int32Array(128)
  for (let code = 0; code < 128; code++) {
    const folded = caseInsensitive && code >= 65 && code <= 90 ? code + 32 : code
    asciiColumn[code] = columnOf.get(folded) ?? 0
  }

  // The trie.
  const children: Array<Map<number, number>> = [new Map()]
  const outputs: Array<Array<number>> = [[]]
  anchors.forEach((anchor, position) => {
    let state = 0
    for (let offset = 0; offset < anchor.length; offset++) {
      const column = columnOf.get(anchor.charCodeAt(offset))!
      let child = children[state]!.get(column)
      if (child === undefined) {
        child = children.length
        children.push(new Map())
        outputs.push([])
        children[state]!.set(column, child)
      }
      state = child
    }
    outputs[state]!.push(position)
  })

  // Failure links breadth-first, folded into a complete transition table; outputs linked along failures.
  const states = children.length
  const delta = new Int32Array(states * columns)
  const fail = new Int32Array(states)
  const outputLink = new Int32Array(states).fill(-1)
  const queue: Array<number> = []
  for (const [column, child] of children[0]!) {
    delta[column] = child
    queue.push(child)
  }
  for (let head = 0; head < queue.length; head++) {
    const state = queue[head]!
    const fallback = fail[state]!
    outputLink[state] = outputs[fallback]!.length > 0 ? fallback : outputLink[fallback]!
    for (let column = 0; column < columns; column++) {
      const child = children[state]!.get(column)
      if (child === undefined) {
        delta[state * columns + column] = delta[fallback * columns + column]!
      } else {
        delta[state * columns + column] = child
        fail[child] = delta[fallback * columns + column]!
        queue.push(child)
      }
    }
  }
  // The first state along the failure chain that has outputs, or -1: one read per character.
  const firstOutput = Int32Array.from({ length: states }, (_, state) =>
    outputs[state]!.length > 0 ? state : outputLink[state]!
  )
  const lengths = anchors.map((anchor) => anchor.length)

  return (text: string, found: Array<Array<number> | undefined>) => {
    let state = 0
    for (let position = 0; position < text.length; position++) {
      const code = text.charCodeAt(position)
      state = delta[state * columns + (code < 128 ? asciiColumn[code]! : (columnOf.get(code) ?? 0))]!
      for (let output = firstOutput[state]!; output !== -1; output = outputLink[output]!) {
        for (const anchorIndex of outputs[output]!) {
          const start = position - lengths[anchorIndex]! + 1
          const wordStart = start === 0 || !isWordCode(text.charCodeAt(start - 1))
          if (wordStart || !wordStartOnly[anchorIndex])
            (found[anchorIndex] ??= []).push(start * 2 + (wordStart ? 1 : 0))
        }
      }
    }
  }
}

/** `caseInsensitive` folds A-Z to a-z while scanning (anchors are then given in lower case). */
export const makeAnchorScanner = (anchors: ReadonlyArray<Anchor>, caseInsensitive = false): AnchorScanner => {
  // An anchor wanted anywhere by one detector is recorded everywhere.
  const byText = new Map<string, boolean>()
  for (const { text, wordStartOnly } of anchors) byText.set(text, (byText.get(text) ?? true) && wordStartOnly)
  const unique = [...byText.keys()]
  const indexOf = new Map(unique.map((anchor, index) => [anchor, index]))
  const scanInto = makeAhoCorasick(
    unique,
    unique.map((text) => byText.get(text)!),
    caseInsensitive
  )
  return {
    scan: (text) => {
      const found: Array<Array<number> | undefined> = new Array(unique.length).fill(undefined)
      scanInto(text, found)
      return found
    },
    index: (anchor) => indexOf.get(anchor) ?? -1
  }
}
