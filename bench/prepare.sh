# Sourced by the bench scripts, from the checkout's root: `bench_prepare`
# installs the test tools at their locked versions (`--keras`: and the
# tutorial's TensorFlow), and sets DATA to the shared data, refusing to go
# on without its photos.

bench_prepare() {
  if [[ ${1:-} == --keras ]]; then
    eval "$(CATDOG_WITH_KERAS=1 scripts/setup.sh --test-tools)"
  else
    eval "$(scripts/setup.sh --test-tools)"
  fi
  source scripts/data_dir.sh # CATDOG_DATA
  DATA=$CATDOG_DATA
  [[ -d "$DATA/catsdogs" ]] || {
    echo "bench: photos not found at $DATA/catsdogs (set CATDOG_DATA)"
    exit 2
  }
}
