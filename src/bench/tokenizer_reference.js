// The reference figure for bench_tokenizer: Hugging Face `tokenizers` (its
// Node binding wraps the Rust crate) encoding the same documents.
//
//   node src/bench/tokenizer_reference.js TOKENIZER_JSON DOCUMENTS_JSONL
//
// bench_tokenizer writes DOCUMENTS_JSONL ({"text": ...} per line) and runs
// this with NODE_PATH at the module `make bench` installs (npm install
// tokenizers). Prints one JSON object: the library's version, load seconds, the token count and a
// 32-bit FNV-1a hash of every id (so the caller checks both tokenizers gave
// the same ids), and MB/s per core (CPU time) and per wall second for
//   cold: one document at a time, fresh tokenizer (its word cache empty);
//   warm: the same documents again;
//   batch: encodeBatch on a fresh tokenizer (the library's own threads).
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

function timed(megabytes, body) {
  const cpuStart = process.cpuUsage();
  const wallStart = process.hrtime.bigint();
  return body().then((result) => {
    const wall = Number(process.hrtime.bigint() - wallStart) / 1e9;
    const cpu = process.cpuUsage(cpuStart);
    return { result, per_core: megabytes / ((cpu.user + cpu.system) / 1e6), wall: megabytes / wall };
  });
}

async function main() {
  const [tokenizerPath, documentsPath] = process.argv.slice(2);
  const documents = fs.readFileSync(documentsPath, 'utf8').split('\n').filter((line) => line)
    .map((line) => JSON.parse(line).text);
  const megabytes = documents.reduce((sum, text) => sum + Buffer.byteLength(text), 0) / 1e6;
  const options = { addSpecialTokens: false };

  const loadStart = process.hrtime.bigint();
  const tokenizer = await Tokenizer.fromFile(tokenizerPath);
  const loadSeconds = Number(process.hrtime.bigint() - loadStart) / 1e9;

  const encodeEach = async () => {
    let tokens = 0;
    let hash = 0x811c9dc5;
    for (const text of documents) {
      for (const id of (await tokenizer.encode(text, null, options)).getIds()) {
        hash = Math.imul(hash ^ id, 0x01000193) >>> 0;
        ++tokens;
      }
    }
    return { tokens, hash };
  };
  const cold = await timed(megabytes, encodeEach);
  const warm = await timed(megabytes, encodeEach);
  const fresh = await Tokenizer.fromFile(tokenizerPath);
  const batch = await timed(megabytes, () => fresh.encodeBatch(documents, options));

  console.log(JSON.stringify({
    version: require('tokenizers/package.json').version, load_s: loadSeconds, tokens: cold.result.tokens, id_hash: cold.result.hash,
    cold_per_core: cold.per_core, cold_wall: cold.wall,
    warm_per_core: warm.per_core, warm_wall: warm.wall,
    batch_per_core: batch.per_core, batch_wall: batch.wall,
  }));
}

main().catch((error) => { console.error('error: ' + error.message); process.exit(1); });
