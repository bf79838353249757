/**
 * Indirect injection, structurally: a message that hands the model data to process ("summarize this email: '...'",
 * "translate the following:\n...", "what does this review say?") and, inside that data, a sentence addressed to the
 * model rather than to the data's human reader ("the assistant must reply ...", "print the following: ...", "when
 * summarizing this, ...", "tell the user to ...").
 *
 * Either half is ordinary on its own: people paste documents every day, and a directive to an AI can be the user's
 * own request. Only a directive found after the data starts is the planted instruction, so the pair scores at the
 * block threshold and a directive alone stays below the flag threshold. Ordinary imperatives for people ("Stir the
 * sauce", "Press the button", "Please reply by Friday") name neither the model nor its output, and do not count.
 *
 * Linear time: every repetition is bounded, and each pattern starts with a literal alternation. Fast: one pass over
 * the text finds where those literals occur (Anchors.ts), and each pattern is tried only there, as a sticky match.
 */
import { foldedAnchors, leadPositions, type LedPattern, ledPattern, matchesIn, type Occurrences } from "./Anchors.js"

/** Words that set up data to be processed, up to where the data begins. */
const dataCue = ledPattern(
  foldedAnchors,
  [
    "summari",
    "summary of",
    "tl",
    "translat",
    "analy",
    "proofread",
    "paraphrase",
    "rewrite",
    "classify",
    "categori",
    "extract",
    "review",
    "action items",
    "key points",
    "main",
    "sentiment of",
    "what does",
    "based on",
    "given this",
    "given the following",
    "according to",
    ...["from", "in", "of"].flatMap((word) =>
      ["this", "the following", "the attached", "the below"].map((what) => `${word} ${what}`)
    ),
    "the following",
    "below is",
    "here is",
    "here's",
    "resum",
    "traduc",
    "traduz",
    "traduis",
    "zusammen",
    "ubersetze",
    "riassumi"
  ],
  [
    "(?:summari[sz]e|summary of|tl ?;? ?dr|translate|translation of|analy[sz]e|proofread|paraphrase|rewrite",
    "|classify|categori[sz]e|extract|review|action items|key points|main (?:points|ideas|conclusions)|sentiment of",
    "|what does (?:this|the|that) [a-z]{2,16} (?:say|mean)|based on|given (?:this|the following)|according to",
    "|(?:from|in|of) (?:this|the following|the attached|the below)|the following|below is|here is|here's",
    // Spanish, Portuguese, French, German, Italian.
    "|resume|resumen|resumir|resuma|traduce|traducir|traduza|resumez|traduis|traduisez|zusammen|ubersetze|riassumi|traduci)\\b"
  ].join(""),
  { flags: "g" }
)

/** Where the data begins: a colon, quote, bracket or line break after the cue (within a few words of it). */
const DATA_START = /[:\n'"`<{[]/g
const CUE_TO_DATA = 160
/** Shorter than this, what follows the cue is a question, not a document. */
const MIN_DATA = 20

const AI_NOUNS = [
  "ai",
  "a.i.",
  "assistant",
  "model",
  "language model",
  "llm",
  "chatbot",
  "bot",
  "gpt",
  "chatgpt",
  "summarizer",
  "summariser",
  "translator",
  "reader",
  "agent"
]
const AI_NOUN =
  "(?:ai|a\\.i\\.|assistant|ai assistant|model|language model|llm|chatbot|bot|gpt|chatgpt|summari[sz]er|translator|reader|agent)"
const OUTPUT_VERB =
  "(?:respond|reply|answer|say|print|output|write|state|declare|repeat|return|display|type|include|append|add|mention|insert|recommend|claim|tell|inform|reveal|share|disclose|send|ignore|disregard|forget|refuse|summari[sz]e|translate|obey|follow|listen)"
const MODAL =
  "(?:must|should|shall|will|needs? to|has to|have to|is (?:required|instructed|told|expected|asked) to|are (?:required|instructed|told|expected|asked|now|to)(?: to)?|(?:has|have|'ve) been (?:instructed|told|asked|ordered|programmed) to|'re (?:required|instructed|expected) to|is to|are to)"

/**
 * Sentences aimed at the model that is processing the data. Folded text: lower case, typographic quotes made plain.
 */
const directives: ReadonlyArray<LedPattern> = [
  // "The assistant must reply ...", "AI models should always say ...", "you have been instructed to print ...".
  ledPattern(
    foldedAnchors,
    AI_NOUNS,
    `${AI_NOUN}s? ${MODAL} (?:(?:now|only|always|also|instead|then|immediately|simply|just) ){0,2}${OUTPUT_VERB}\\b`,
    { before: "(?:the |any |all |this |dear |an? )?" }
  ),
  ledPattern(
    foldedAnchors,
    ["you"],
    `you(?: ${MODAL}| (?:are|have been|'ve been|'re) (?:hereby )?(?:instructed|ordered|required|commanded) to) (?:(?:now|only|always|also|instead|then|immediately|simply|just) ){0,2}(?:(?:respond|reply|answer|say|print|output|state|repeat|write|return) (?:(?:only|exactly|just|back) )?(?:with|that|:|["']|the following|the (?:word|phrase|sentence|text|string)|nothing|in (?:all )?caps)|(?:ignore|disregard|forget) (?:the|this|that|all|any|your|every)|tell the user|inform the user|reveal|disclose|obey|listen to)`
  ),
  // Imperatives at a sentence start about the model's output: "Print the following: ...", "Respond only with ...".
  ledPattern(
    foldedAnchors,
    [
      ...["respond", "reply", "answer", "say", "print", "output", "state", "write", "type", "repeat", "display"],
      ...["return", "ignore", "disregard", "forget", "skip", "tell", "inform", "advise", "instruct"]
    ],
    `(?:(?:respond|reply|answer) (?:(?:only|exactly|just) )?(?:with|by saying|in all caps|that)\\b|(?:say|print|output|state|write|type|repeat|display|return) (?:(?:only|exactly|just|out) )?(?:the following|the (?:word|phrase|sentence|string|text)|this (?:message|text|sentence|phrase)|:|["'])|(?:ignore|disregard|forget|skip) (?:(?:all|any|the|this|your|these) )?(?:(?:previous|prior|above|earlier|original|user's|user|actual|real|initial) )?(?:instructions?|task|prompt|question|request|directions|rules|web ?page|document|text|article|resume|e-?mail|review|content|summary|translation|above)\\b|(?:tell|inform|advise|instruct) the (?:user|reader|customer|recipient)s? (?:to|that)\\b)`,
    { before: `(?:^|[.!?:;>\\n"'(*-] ?)(?:please |now |instead,? |just |simply |also )?`, wordStart: false }
  ),
  // "Instead, say ...", "rather than summarizing, print ...".
  ledPattern(
    foldedAnchors,
    ["instead", "rather than"],
    "(?:instead|rather than (?:summari[sz]ing|translating|answering|analy[sz]ing)),? (?:just |only |please )?(?:respond|reply|answer|say|print|output|write|state|return|tell)\\b"
  ),
  // "When summarizing this, ...", "if you are translating this document, ...".
  ledPattern(
    foldedAnchors,
    ["when", "while", "if", "before", "after"],
    "(?:when|while|if|before|after|whenever) (?:you (?:are |were )?)?(?:summari[sz]ing|translating|answering|processing|analy[sz]ing|responding to|replying to|asked (?:about|to summari[sz]e|to translate)) (?:this|these|the|that|it|any)\\b"
  ),
  // The same sentences in a few other languages (Spanish, Portuguese, French, Italian, German).
  ledPattern(
    foldedAnchors,
    [
      ...["se te ha", "debes", "deberas", "tienes que", "responde", "contesta", "imprime", "deve", "responda"],
      ...["tu dois", "vous devez", "reponds", "repondez", "devi", "rispondi", "du musst", "sie mussen", "du sollst"],
      "antworte"
    ],
    "(?:se te ha (?:instruido|indicado|ordenado)|(?:debes|deberas|tienes que) (?:responder|decir|imprimir|escribir|ignorar|olvidar|revelar)|(?:responde|contesta) (?:solo|solamente|unicamente|con)\\b|imprime (?:lo siguiente|esto)|(?:voce )?deve (?:responder|dizer|imprimir|ignorar)|responda (?:apenas|somente|com)\\b|(?:tu dois|vous devez) (?:repondre|dire|imprimer|ecrire|ignorer|oublier|reveler)|(?:reponds|repondez) (?:uniquement|seulement|par)\\b|(?:devi|deve) (?:rispondere|dire|stampare|ignorare)|rispondi (?:solo|soltanto|con)\\b|(?:du musst|sie mussen|du sollst) (?:[a-z]{2,16} ){0,3}(?:antworten|sagen|ausgeben|ignorieren|schreiben|drucken)|antworte (?:nur|ausschliesslich|mit)\\b)"
  )
]

/**
 * Inside the data only: a planted restatement of the answer ("let's say the capital is ...", "we might state the
 * total is ...", "let's state that the conclusion is: ..."). Ordinary in a user's own question, so it never counts
 * outside embedded data.
 */
const steering = ledPattern(
  foldedAnchors,
  ["let", "we", "one", "suppose we", "imagine we"],
  "(?:let's|let us|lets|we (?:might|could|may|should|will|would|can|shall)|one (?:might|could)|suppose we|imagine we) (?:[a-z']{1,16} ){0,8}?(?:state|say|declare|claim|assert|pretend|assume|write|answer|conclude|report)(?: that)?(?: ?:| (?:the|its|their|our|all) (?:[a-z0-9',.-]{1,20} ){0,6}?(?:is|are|was|were|equals?|totals?)\\b)"
)

export const embeddedDirectives: ReadonlyArray<RegExp> = directives.map((directive) => directive.full)
export const embeddedSteering: RegExp = steering.full
/** The words that set up data, as one pattern (global): what `dataStart` looks for, for tests. */
export const embeddedDataCue: RegExp = dataCue.full

const findDataStart = (folded: string, found: Occurrences): number => {
  const candidates = leadPositions(dataCue, found, 0, folded.length).sort((a, b) => a - b)
  for (const position of candidates) {
    dataCue.sticky.lastIndex = position
    const cue = dataCue.sticky.exec(folded)
    if (cue === null) continue
    DATA_START.lastIndex = position + cue[0].length
    const start = DATA_START.exec(folded)
    if (start === null || start.index - position > CUE_TO_DATA) return -1
    return folded.length - start.index - 1 >= MIN_DATA ? start.index + 1 : -1
  }
  return -1
}

/** Where the embedded data starts, or -1 if the message does not set up data to process. */
export const dataStart = (folded: string): number => findDataStart(folded, foldedAnchors.scan(folded))

const hasDirective = (found: Occurrences, slice: string, from: number, to: number): boolean =>
  directives.some((directive) => matchesIn(directive, found, slice, from, to))

/** Both halves: data set up for processing, and a directive to the model inside it. */
export const EMBEDDED_WEIGHT = 0.65
/** A directive to the model with no data around it: a hint for other evidence, below the flag threshold. */
export const DIRECTIVE_WEIGHT = 0.3

/**
 * The weight of the embedded-instruction evidence in one folded text (0 when there is none); `found` is its scan by
 * `foldedAnchors`, when the caller has it.
 */
export const embeddedInstruction = (folded: string, found: Occurrences = foldedAnchors.scan(folded)): number => {
  const start = findDataStart(folded, found)
  if (start < 0) return hasDirective(found, folded, 0, folded.length) ? DIRECTIVE_WEIGHT : 0
  const data = folded.slice(start)
  const end = folded.length
  if (hasDirective(found, data, start, end) || matchesIn(steering, found, data, start, end)) return EMBEDDED_WEIGHT
  // The data has no directive: only the text before it is left to look at (each text is scanned once).
  return hasDirective(found, folded.slice(0, start), 0, start) ? DIRECTIVE_WEIGHT : 0
}
