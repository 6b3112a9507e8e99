#!/usr/bin/env bash
# Regenerates the TPM test vectors in this directory from a real software TPM (swtpm) driven by
# tpm2-tools. Every output is checked with tpm2_checkquote before it is kept. See README.md for
# what each file is.
#
# Needs: swtpm (0.7 measured), tpm2-tools 5.x with the swtpm TCTI, iproute2's ss, awk.
# Usage: tests/vectors/tpm/generate.sh   (overwrites the vectors next to this script; the keys are
# fresh every run, so all files must be committed together)
set -euo pipefail

OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
STATE="$WORK/state"
mkdir -p "$STATE"
SWTPM_PID=""

# The fixed nonces (qualifying data) the quotes are made over. 32 bytes each.
NONCE1="000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
NONCE2="a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
NONCE3="5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
NONCE4="c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff"
SEL1="sha256:0,1,2,3,4,5,6,7,14"
SEL2="sha1:0,14+sha256:0,14"
AK_HANDLE="0x81010002"

stop_swtpm() {
    # Kill only the swtpm this script started, by its pid.
    if [[ -n "$SWTPM_PID" ]] && kill -0 "$SWTPM_PID" 2>/dev/null; then
        kill "$SWTPM_PID"
        for _ in $(seq 50); do
            kill -0 "$SWTPM_PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    SWTPM_PID=""
}

cleanup() {
    stop_swtpm
    rm -rf "$WORK"
}
trap cleanup EXIT

# A port is free when no TCP socket in any state (listening, TIME_WAIT, ...) uses it locally.
port_free() {
    ! ss -tanH "sport = :$1" | grep -q .
}

pick_port() {
    local p
    for _ in $(seq 200); do
        # Below the kernel's ephemeral range, so client connections cannot race us for it.
        p=$((20000 + RANDOM % 12000))
        if port_free "$p" && port_free "$((p + 1))"; then
            echo "$p"
            return 0
        fi
    done
    echo "no free loopback port pair found" >&2
    return 1
}

start_swtpm() {
    local p
    p="$(pick_port)"
    rm -f "$STATE/swtpm.pid"
    swtpm socket --tpm2 --tpmstate dir="$STATE" \
        --server type=tcp,port="$p",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port="$((p + 1))",bindaddr=127.0.0.1 \
        --flags not-need-init,startup-clear \
        --pid file="$STATE/swtpm.pid" --daemon
    for _ in $(seq 50); do
        [[ -s "$STATE/swtpm.pid" ]] && break
        sleep 0.1
    done
    SWTPM_PID="$(cat "$STATE/swtpm.pid")"
    export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$p"
    for _ in $(seq 50); do
        tpm2_getcap properties-fixed >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "swtpm did not come up on port $p" >&2
    return 1
}

# swtpm has three transient object slots and no resource manager: flush after each tool.
flush() { tpm2_flushcontext -t; tpm2_flushcontext -s; }

# Writes "<bank>:<index> <hex value>" lines for a selection, in TPML order, from tpm2_pcrread's
# YAML output.
pcr_text() {
    tpm2_pcrread "$1" | awk -F: '
        /^ *sha[0-9]+ *:/ { bank = $1; gsub(/ /, "", bank); next }
        /^ *[0-9]+ *:/ {
            idx = $1; val = $2; gsub(/ /, "", idx); gsub(/ /, "", val); sub(/^0x/, "", val)
            print bank ":" idx " " tolower(val)
        }'
}

cd "$WORK"
start_swtpm

# Endorsement key (ECC P-256, default template) and an ECDSA/SHA-256 P-256 attestation key.
tpm2_createek -G ecc -c ek.ctx -u ek.pub -f tss >/dev/null
flush
tpm2_createak -C ek.ctx -c ak.ctx -G ecc -g sha256 -s ecdsa -u ak.pub -f tss -n ak.name \
    >/dev/null
flush
tpm2_readpublic -c ak.ctx -f tpmt -o ak.tpmt -q ak.qname >/dev/null
flush
tpm2_readpublic -c ek.ctx -n ek.name >/dev/null
flush

# Make PCR 14 non-zero in both banks we quote.
tpm2_pcrextend 14:sha1=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,sha256=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
flush

# Quote 1: one bank. -f tss (the default) writes TPMT_SIGNATURE; -f plain writes the bare
# algorithm signature (for ECDSA: a DER ECDSA-Sig-Value). -o keeps the default `-F serialized`
# PCR dump, the only form tpm2_checkquote 5.4 accepted here; the values the tests read come
# from tpm2_pcrread.
tpm2_quote -c ak.ctx -l "$SEL1" -q "$NONCE1" -g sha256 -m quote.msg -s quote.sig -f tss \
    -o quote.pcrs >/dev/null
flush
tpm2_checkquote -u ak.pub -m quote.msg -s quote.sig -f quote.pcrs -g sha256 -q "$NONCE1" >/dev/null
pcr_text "$SEL1" >quote.pcrs.txt
flush

# The same kind of quote, signature written with -f plain, to document the difference.
tpm2_quote -c ak.ctx -l sha256:0 -q "$NONCE1" -g sha256 -m quote-plain.msg -s quote-plain.sig -f plain >/dev/null
flush

# Quote 2: two banks, to pin the composite-digest order (bank list order, ascending index).
tpm2_quote -c ak.ctx -l "$SEL2" -q "$NONCE2" -g sha256 -m quote2.msg -s quote2.sig \
    -o quote2.pcrs >/dev/null
flush
tpm2_checkquote -u ak.pub -m quote2.msg -s quote2.sig -f quote2.pcrs -g sha256 -q "$NONCE2" >/dev/null
pcr_text "$SEL2" >quote2.pcrs.txt
flush

# An RSA-2048 RSASSA/SHA-256 AK and one quote from it: parsed, but not verified by vouch yet.
tpm2_createak -C ek.ctx -c ak-rsa.ctx -G rsa -g sha256 -s rsassa -u ak-rsa.pub -f tss >/dev/null
flush
tpm2_quote -c ak-rsa.ctx -l sha256:0 -q "$NONCE1" -g sha256 -m quote-rsa.msg -s quote-rsa.sig >/dev/null
flush
tpm2_checkquote -u ak-rsa.pub -m quote-rsa.msg -s quote-rsa.sig -g sha256 -q "$NONCE1" >/dev/null
flush

# Persist the ECC AK so the same key can quote after a TPM restart.
tpm2_evictcontrol -C o -c ak.ctx "$AK_HANDLE" >/dev/null
flush

# Restart the TPM: an orderly TPM2_Shutdown(CLEAR), then a new swtpm process whose
# startup-clear flag issues TPM2_Startup(CLEAR) -- a TPM Reset, so resetCount goes up.
tpm2_shutdown -c
stop_swtpm
start_swtpm
tpm2_quote -c "$AK_HANDLE" -l "$SEL1" -q "$NONCE3" -g sha256 -m quote-reset.msg -s quote-reset.sig \
    -o quote-reset.pcrs >/dev/null
flush
tpm2_checkquote -u ak.pub -m quote-reset.msg -s quote-reset.sig -f quote-reset.pcrs -g sha256 -q "$NONCE3" >/dev/null
pcr_text "$SEL1" >quote-reset.pcrs.txt
flush

# Restart again without TPM2_Shutdown (power loss): shows what `safe` becomes.
stop_swtpm
start_swtpm
tpm2_quote -c "$AK_HANDLE" -l sha256:0 -q "$NONCE4" -g sha256 -m quote-unorderly.msg -s quote-unorderly.sig \
    -o quote-unorderly.pcrs >/dev/null
flush
tpm2_checkquote -u ak.pub -m quote-unorderly.msg -s quote-unorderly.sig -f quote-unorderly.pcrs -g sha256 -q "$NONCE4" >/dev/null
pcr_text sha256:0 >quote-unorderly.pcrs.txt
flush
stop_swtpm

printf '%s\n' "$NONCE1" >nonce1.hex
printf '%s\n' "$NONCE2" >nonce2.hex
printf '%s\n' "$NONCE3" >nonce3.hex
printf '%s\n' "$NONCE4" >nonce4.hex

for f in ek.pub ek.name ak.pub ak.tpmt ak.name ak.qname \
    quote.msg quote.sig quote.pcrs.txt quote-plain.sig \
    quote2.msg quote2.sig quote2.pcrs.txt \
    ak-rsa.pub quote-rsa.msg quote-rsa.sig \
    quote-reset.msg quote-reset.sig quote-reset.pcrs.txt \
    quote-unorderly.msg quote-unorderly.sig quote-unorderly.pcrs.txt \
    nonce1.hex nonce2.hex nonce3.hex nonce4.hex; do
    cp "$f" "$OUT/$f"
    chmod 644 "$OUT/$f"
done

# Human-readable decodes for reviewers (not read by tests).
{
    for q in quote quote2 quote-reset quote-unorderly; do
        echo "== $q.msg"
        tpm2_print -t TPMS_ATTEST "$q.msg"
    done
    echo "== ak.pub"
    tpm2_print -t TPM2B_PUBLIC ak.pub
} >"$OUT/decoded.txt"

echo "vectors written to $OUT"
