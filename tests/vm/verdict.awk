# Verdict of one VM run from its serial log (tests/vm/run.sh; usable alone too):
#
#   awk -v name=6.1 -v qrc=0 -v secs=56 -f tests/vm/verdict.awk target/vm/logs/<kernel>.log
#
# Reads the "=== VM-... ===" markers written by tests/vm/init and libtest's own lines
# ("test result: ...", "test x ... FAILED", "---- x stdout ----"). Prints a summary line,
# the failing tests with the first lines of their panic message, harness problems, and
# last a machine line "#TOTALS <passed> <failed> <bad: 0|1>".
{
    gsub(/\r/, "")
    gsub(/\033\[[0-9;?]*[A-Za-z]/, "")   # console resets SeaBIOS/the kernel print
    gsub(/\033[c78]/, "")
}
/=== VM-KERNEL / { booted = 1; kver = $0; sub(/.*=== VM-KERNEL /, "", kver); sub(/ ===.*/, "", kver); next }
/^=== VM-DONE ===/ { done = 1; next }
/^=== VM-CHECK exit=/ { split($3, a, "="); if (a[2] != 0) problems = problems sprintf("  netprobe_check: exit %s\n", a[2]); next }
/^=== VM-T [0-9.]+ ===$/ {
    t = $3 + 0
    if (havet && justdone != "") tdur[cur "::" justdone] = t - lastt
    lastt = t; havet = 1; justdone = ""
    next
}
/^test [^ ]+ \.\.\. (ok|FAILED|ignored)$/ { justdone = $2 }
/^=== VM-TEST [^ ]+ ===$/ {
    havet = 0; justdone = ""
    cur = $3; sub(/-[0-9a-f]+$/, "", cur)
    nexe++; has_result = 0; curfailed = 0; inblock = 0; curok = 0; curbad = 0; running = ""
    next
}
/^=== VM-TEST [^ ]+ exit=/ {
    split($4, a, "="); rc = a[2]
    split($5, a, "="); took[cur] = a[2] + 0
    if (!has_result) {
        unfinished(sprintf("exit %s%s", rc, (rc == 124 || rc == 143) ? ", killed by the in-VM timeout (VM_TEST_TIMEOUT)" : ""))
    } else if (rc != 0 && !curfailed) {
        problems = problems sprintf("  %s: exit %s after \"test result: ok\"\n", cur, rc)
        bad = 1
    }
    cur = ""; inblock = 0
    next
}
/^test result: / {
    has_result = 1
    for (i = 1; i < NF; i++) {
        if ($(i + 1) ~ /^passed;?$/) pass += $i
        if ($(i + 1) ~ /^failed;?$/) { fail += $i; if ($i > 0) curfailed = 1 }
    }
    if ($3 ~ /^FAILED/) curfailed = 1
    inblock = 0
    next
}
/^test [^ ]+ \.\.\. / { running = $2 }
/^test [^ ]+ \.\.\. ok$/ { curok++; running = "" }
/^test [^ ]+ \.\.\. FAILED$/ { addfailed($2); curbad++; running = "" }
/^---- [^ ]+ stdout ----$/ { inblock = 1; flist = 0; bname = $2; blines = 0; next }
/^failures:$/ { inblock = 0; flist = 1; next }
# libtest's closing list of failed tests: found even when other output split a "... FAILED" line.
flist && /^    [^ ]+$/ { addfailed($1); next }
flist && !/^[ \t]*$/ { flist = 0 }
inblock && blines < 8 && $0 !~ /^(note: run with|stack backtrace:|[ \t]*$)/ {
    msg[bname] = msg[bname] "      " substr($0, 1, 300) "\n"
    blines++
}
# The five largest entries of seconds[name] as "name Ns, ..." (`done` marks those taken).
function top5(seconds, done,   k, e, best, out) {
    out = ""
    for (k = 0; k < 5; k++) {
        best = ""
        for (e in seconds) if (!(e in done) && (best == "" || seconds[e] > seconds[best])) best = e
        if (best == "") break
        done[best] = 1
        out = out sprintf("%s%s %ds", (k ? ", " : ""), best, seconds[best])
    }
    return out
}
function addfailed(t) {
    if ((cur "::" t) in seen) return 0
    seen[cur "::" t] = 1
    failed[++nf] = cur "::" t
    return 1
}
# A test executable ended (or the VM died) without libtest's summary: count what the
# log shows, and the test that was running as failed.
function unfinished(why) {
    problems = problems sprintf("  %s: no \"test result\" line (%s)\n", cur, why)
    pass += curok
    fail += curbad
    if (running != "") {
        addfailed(running)
        msg[running] = "      (did not finish: " why ")\n"
        fail++
    }
    bad = 1
}
END {
    if (cur != "") unfinished(qrc == 124 ? "the VM was killed by the host timeout" : "the VM stopped, qemu exit " qrc)
    status = "ok"
    if (!booted) status = "did not boot"
    else if (nexe == 0) status = "ran no test executable"
    else if (!done) status = (qrc == 124 ? "timed out" : "did not finish") " (qemu exit " qrc ")"
    else if (bad) status = "test executable did not finish"
    else if (pass + fail == 0) status = "ran no test"
    if (status == "ok" && fail > 0) status = "tests failed"
    printf "VM %s: %d passed, %d failed (%s, %ss)\n", (kver != "" ? kver : name), pass, fail, status, secs
    for (i = 1; i <= nf; i++) {
        split(failed[i], p, "::")
        printf "  FAILED %s::%s\n%s", p[1], p[2], msg[p[2]]
    }
    printf "%s", problems
    slowest = top5(took, shown)
    if (slowest != "") printf "  slowest: %s\n", slowest
    slowest = top5(tdur, tshown)
    if (slowest != "") printf "  slowest tests: %s\n", slowest
    printf "#TOTALS %d %d %d\n", pass, fail, (status == "ok" ? 0 : 1)
}
