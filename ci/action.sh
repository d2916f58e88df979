#!/usr/bin/env bash
# The steps of the circuitlang GitHub Action (action.yml), as one script that runs anywhere:
# check and fmt --check every spec, then verify each one with GitHub annotations on stdout, a JUnit
# file and an HTML page per spec, and a Markdown step summary that names the page. Every spec is
# verified even after one fails, so one run shows every problem; the exit code is the worst one
# (1: a claim failed, 2: a spec error, 3: a model or runtime error).
#
# Inputs (environment): SPECS (globs, default "specs/*.circ"), VERIFY (true|false, default true),
# REPORTS (folder for the JUnit files, Markdown summaries and HTML pages, default circuitlang-reports),
# DEVICE (default cpu), VERIFY_ARGS (more verify options), GITHUB_STEP_SUMMARY (set by GitHub; the summary is appended),
# GITHUB_OUTPUT (set by GitHub: the step's outputs verdict, exit-code, reports, pages and junit are written there).
#
# Reports are named by the spec's path, not its file name, so that specs/a/x.circ and specs/b/x.circ
# do not overwrite each other: the path relative to the working folder, without .circ, with each
# / written as __ (specs__a__x.html).
set -uo pipefail

shopt -s nullglob
read -r -a patterns <<< "${SPECS:-specs/*.circ}"
specs=()
for pattern in "${patterns[@]}"; do
    specs+=($pattern)
done
# The same file matched by two globs is verified once.
declare -A seen=()
unique=()
for spec in "${specs[@]}"; do
    if [ -z "${seen[$spec]:-}" ]; then seen[$spec]=1; unique+=("$spec"); fi
done
specs=("${unique[@]+"${unique[@]}"}")
if [ "${#specs[@]}" -eq 0 ]; then
    echo "::error title=circuitlang::no spec matches SPECS='${SPECS:-specs/*.circ}'"
    exit 2
fi

worst=0
note() { if [ "$1" -gt "$worst" ]; then worst=$1; fi; }

report_name() {  # specs/a/x.circ -> specs__a__x; an absolute path inside the working folder is made relative
    local path="${1#"$PWD"/}"
    path="${path#./}"
    path="${path#/}"
    path="${path%.circ}"
    printf '%s' "${path//\//__}"
}

pages=()
junits=()

circuitlang check "${specs[@]}"; note $?
circuitlang fmt --check "${specs[@]}"; note $?

if [ "${VERIFY:-true}" = "true" ]; then
    reports="${REPORTS:-circuitlang-reports}"
    mkdir -p "$reports"
    read -r -a extra <<< "${VERIFY_ARGS:-}"
    for spec in "${specs[@]}"; do
        name="$(report_name "$spec")"
        summary="$reports/$name.md"
        page="$reports/$name.html"
        circuitlang verify "$spec" --device "${DEVICE:-cpu}" --format github \
            --write "junit=$reports/$name.xml" --write "markdown=$summary" --write "html=$page" "${extra[@]}"
        note $?
        pages+=("$page")
        junits+=("$reports/$name.xml")
        if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -f "$summary" ]; then
            cat "$summary" >> "$GITHUB_STEP_SUMMARY"
            # A step summary cannot hold the page (no scripts, no inline SVG): it names the file, which
            # the workflow's upload of the reports folder attaches to the run.
            printf '\nThe full report, circuit drawing and spec source: `%s` (in the uploaded reports).\n\n' "$page" >> "$GITHUB_STEP_SUMMARY"
        fi
    done
fi

if [ -n "${GITHUB_OUTPUT:-}" ]; then  # the step's outputs, for later steps (steps.ID.outputs.verdict, ...)
    case "$worst" in 0) verdict=passed ;; 1) verdict=failed ;; *) verdict=error ;; esac
    {
        echo "verdict=$verdict"
        echo "exit-code=$worst"
        echo "reports=${REPORTS:-circuitlang-reports}"
        echo "pages<<CIRCUITLANG_END"
        if [ "${#pages[@]}" -gt 0 ]; then printf '%s\n' "${pages[@]}"; fi
        echo "CIRCUITLANG_END"
        echo "junit<<CIRCUITLANG_END"
        if [ "${#junits[@]}" -gt 0 ]; then printf '%s\n' "${junits[@]}"; fi
        echo "CIRCUITLANG_END"
    } >> "$GITHUB_OUTPUT"
fi
exit "$worst"
