# Sourced by the build scripts of tools built from the Go module proxy (helm, istiod).
#   module_version MODULE_DIR MODULE_PATH      the version MODULE_DIR's go.mod requires
#   prebuilt VAR                               exits printing $VAR when it names an executable
#   go_tool_build NAME MODULE_DIR CACHE_DIR VERSION BINARY PACKAGE LDFLAGS
# Prints CACHE_DIR/VERSION/BINARY, building it once with MODULE_DIR's go.mod; a killed build never
# leaves a half cache (the binary moves into place only when complete).
module_version() {
  local v
  v=$(awk -v m="$2" '{for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) {print $(i + 1); exit}}' "$1/go.mod")
  [ -n "$v" ] || { echo "build.sh: cannot read the $2 version from $1/go.mod" >&2; exit 2; }
  echo "$v"
}

prebuilt() {
  local path=${!1:-}
  if [ -n "$path" ] && [ -x "$path" ]; then
    echo "$path"
    exit 0
  fi
}

go_tool_build() {
  local name=$1 module=$2 cache=$3 version=$4 binary=$5 package=$6 ldflags=$7
  local out="$cache/$version"
  if [ -x "$out/$binary" ]; then
    echo "$out/$binary"
    return 0
  fi
  command -v go >/dev/null || { echo "build.sh: go is needed to build $name" >&2; return 2; }
  mkdir -p "$out"
  local tmp
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  trap "rm -rf '$tmp'" EXIT
  echo "build.sh: building $name $version into $out (first time only)" >&2
  (cd "$module" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
    nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$tmp/$binary" "$package") >&2
  mv "$tmp/$binary" "$out/"
  echo "$out/$binary"
}
