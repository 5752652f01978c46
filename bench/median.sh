# Sourced by the bench scripts. median FILE PATTERN: the median of the numbers that the sed
# PATTERN captures as \1 in FILE's lines, as "M (min A, max B)"; nothing if none matched.
median() {
  sed -n "s/$2/\\1/p" "$1" | sort -n | awk '{v[NR] = $1} END {
    if (NR) printf "%s (min %s, max %s)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
