// Reference encodings of generated texts, from the Hugging Face `tokenizers`
// library itself (its Node binding wraps the Rust crate), for
// tests/test_tokenizer.cpp's TokenizerReference.Generated* tests.
//
//   mkdir /tmp/tokref && cd /tmp/tokref && npm install tokenizers@0.23.2
//   NODE_PATH=/tmp/tokref/node_modules node tests/tools/make_tokenizer_cases.js
//
// writes tests/fixtures/{qwen3,deepseek_v3}_tokenizer/generated_cases.json:
// [{"kind", "text", "ids", "decoded"}], texts drawn from a seeded generator
// (random Unicode, long runs of one character, whitespace mixes, code,
// contractions and numbers, special tokens inside text), so a rerun writes
// the same files.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

// mulberry32: a small seeded generator, so the texts never change.
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function texts(random) {
  const int = (n) => Math.floor(random() * n);
  const pick = (list) => list[int(list.length)];
  const out = [];
  const add = (kind, text) => out.push({ kind, text });

  // Code points from many scripts, whitespace, combining marks, emoji,
  // private use and supplementary planes (no surrogates: not UTF-8 text).
  const ranges = [[0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], [0x0a, 0x0a], [0x09, 0x09],
    [0x0d, 0x0d], [0xa0, 0xff], [0x100, 0x24f], [0x300, 0x36f], [0x370, 0x4ff],
    [0x590, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x1100, 0x11ff], [0x2000, 0x206f],
    [0x2070, 0x22ff], [0x3000, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xe000, 0xe0ff],
    [0xff00, 0xffef], [0x1d400, 0x1d7ff], [0x1f300, 0x1f6ff], [0x1f900, 0x1f9ff],
    [0x20000, 0x2a6df]];
  const unicode = (length) => {
    let s = '';
    for (let i = 0; i < length; ++i) {
      const [lo, hi] = pick(ranges);
      s += String.fromCodePoint(lo + int(hi - lo + 1));
    }
    return s;
  };
  for (let i = 0; i < 150; ++i) add('random_unicode', unicode(1 + int(120)));

  const runChars = [' ', '\n', '\t', '\r\n', 'a', 'A', '7', '.', '-', '=', '!', '한', '中',
    'é', 'e\u0301', '\u00a0', '\u3000', '😀', ' a', '\n ', '  \n'];
  for (const c of runChars) add('long_run', c.repeat(50 + int(3000)));
  for (let i = 0; i < 20; ++i) add('long_run', pick(runChars).repeat(1 + int(40)) + 'x' + pick(runChars).repeat(1 + int(40)));

  const spaces = [' ', '  ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u2003', '\u3000', '\u2028',
    '\u200b', '\u000b', '\u000c', '\u0085', ' \n', '\n\n\n'];
  const words = ['alpha', 'Beta', '42', 'x', '한국어', '日本語', 'naïve', '—', '...', '(', ')', ':',
    'ÉCOLE', 'über', '3.14', '#', '//', 'Ünïcödé'];
  for (let i = 0; i < 60; ++i) {
    let s = '';
    const n = 1 + int(25);
    for (let k = 0; k < n; ++k) s += (random() < 0.5 ? pick(spaces) : '') + pick(words) + pick(spaces).repeat(1 + int(3));
    add('whitespace_mix', s);
  }

  const identifiers = ['i', 'n', 'sum', 'value_2', 'camelCase', 'HTTPServer', '_private', 'x1', 'données'];
  const number = () => pick([String(int(10)), String(int(100000)), String(int(1e9)) + String(int(1e9)),
    (random() * 1000).toFixed(int(6)), '0x' + int(65536).toString(16), '1e-' + int(20)]);
  const snippets = [
    () => `def ${pick(identifiers)}(${pick(identifiers)}, ${pick(identifiers)}=${number()}):\n    return ${pick(identifiers)} ** ${number()}  # ${pick(words)}\n`,
    () => `for (int ${pick(identifiers)} = 0; ${pick(identifiers)} < ${number()}; ++i) {\n\t${pick(identifiers)} += a[i] * b[i];\n}\n`,
    () => `const ${pick(identifiers)} = { "${pick(words)}": [${number()}, ${number()}], 'k': null };  // ${pick(words)}`,
    () => `\\frac{${number()}}{${number()}} + \\sqrt{${pick(identifiers)}^2} = \\boxed{${number()}}`,
    () => `<div class="${pick(identifiers)}">&nbsp;${pick(words)}</div>\n`,
    () => `SELECT ${pick(identifiers)}, COUNT(*) FROM t WHERE v >= ${number()} GROUP BY 1;\n`,
    () => `    if x != ${number()}:\n        raise ValueError(f"bad {x!r}")\r\n`,
    () => `$ ./run --${pick(identifiers)}=${number()} 2>&1 | tee log.txt\n`,
  ];
  for (let i = 0; i < 80; ++i) {
    let s = '';
    const n = 1 + int(4);
    for (let k = 0; k < n; ++k) s += pick(snippets)();
    add('code', s);
  }

  const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M",
    "'LL", "'D", "'x", "''", "’s"];
  for (let i = 0; i < 40; ++i) {
    let s = '';
    const n = 1 + int(10);
    for (let k = 0; k < n; ++k)
      s += pick(['I', 'you', 'They', 'IT', '42', ' ', '日本']) + pick(contractions) + pick(['', ' ', '\n', '1']);
    add('contractions', s);
  }
  for (let i = 0; i < 30; ++i) {
    let s = '';
    const n = 1 + int(8);
    for (let k = 0; k < n; ++k) s += pick(['', ' ', ',', '.', '-', '١٢٣', '²', '½', 'Ⅻ']) + number();
    add('numbers', s);
  }
  return out;
}

// Special tokens appear inside text: they are matched before BPE.
function withSpecialTokens(random, list, specials) {
  const int = (n) => Math.floor(random() * n);
  for (let i = 0; i < 30; ++i) {
    // Cut by code points: a UTF-16 slice could split a surrogate pair.
    const base = Array.from(list[int(list.length)].text).slice(0, 80);
    const cut = int(base.length + 1);
    list.push({ kind: 'special_tokens', text: base.slice(0, cut).join('') +
      specials[int(specials.length)] + base.slice(cut).join('') + specials[int(specials.length)] });
  }
  return list;
}

async function main() {
  const fixtures = path.join(__dirname, '..', 'fixtures');
  const targets = [
    ['qwen3_tokenizer', 1, ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>']],
    ['deepseek_v3_tokenizer', 2, ['<｜begin▁of▁sentence｜>', '<｜User｜>', '<｜Assistant｜>', '<think>']],
  ];
  for (const [dir, seed, specials] of targets) {
    const tokenizer = await Tokenizer.fromFile(path.join(fixtures, dir, 'tokenizer.json'));
    const random = generator(seed);
    const cases = [];
    for (const { kind, text } of withSpecialTokens(random, texts(random), specials)) {
      const ids = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
      const decoded = await tokenizer.decode(ids, false);
      cases.push({ kind, text, ids, decoded });
    }
    const file = path.join(fixtures, dir, 'generated_cases.json');
    fs.writeFileSync(file, '[\n' + cases.map((c) => JSON.stringify(c)).join(',\n') + '\n]\n');
    console.log(`${file}: ${cases.length} cases`);
  }
}

main().catch((error) => { console.error('error: ' + error.message); process.exit(1); });
