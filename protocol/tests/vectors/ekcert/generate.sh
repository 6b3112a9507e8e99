#!/usr/bin/env bash
# Regenerates the EK certificate fixtures in this directory (see README.md). Needs swtpm,
# swtpm-tools, tpm2-tools and openssl. Everything is made afresh (new CAs, new EKs), so commit
# the whole directory at once and update the dates and key-dependent values in
# protocol/tests/ekcert.rs. CA private keys stay in the temporary directory.
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
w="$(mktemp -d)"
trap 'kill "$(cat "$w/swtpm.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$w"' EXIT
cd "$w"
mkdir tpm ca

# 1. A TPM manufactured by swtpm_setup with swtpm_localca as its CA (nothing in /var/lib).
printf 'create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s/swtpm-localca.conf\ncreate_certs_tool_options = %s/swtpm-localca.options\nactive_pcr_banks = sha256\n' "$w" "$w" >swtpm_setup.conf
printf 'statedir = %s/ca\nsigningkey = %s/ca/signkey.pem\nissuercert = %s/ca/issuercert.pem\ncertserial = %s/ca/certserial\n' "$w" "$w" "$w" "$w" >swtpm-localca.conf
printf -- '--platform-manufacturer vouch-test\n--platform-version 2.1\n--platform-model swtpm\n' >swtpm-localca.options
swtpm_setup --tpm2 --tpmstate "$w/tpm" --config "$w/swtpm_setup.conf" \
  --create-ek-cert --create-platform-cert --pcr-banks sha256 >/dev/null
cp ca/swtpm-localca-rootca-cert.pem "$out/swtpm-root.pem"
cp ca/issuercert.pem "$out/swtpm-intermediate.pem"

# 2. Its EK certificates (NV) and EK public areas (persistent handles) over tpm2-tools.
P=$((20000 + RANDOM % 20000))
swtpm socket --tpm2 --tpmstate dir="$w/tpm" \
  --server type=tcp,port=$P,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((P + 1)),bindaddr=127.0.0.1 \
  --flags not-need-init,startup-clear --pid file="$w/swtpm.pid" --daemon
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$P" TSS2_LOG=all+NONE
tpm2_nvread 0x01c00002 -o "$out/rsa2048-ek.der" 2>/dev/null
tpm2_nvread 0x01c00016 -o "$out/p384-ek.der" 2>/dev/null
tpm2_readpublic -c 0x81010001 -f tpmt -o "$out/rsa2048-ek.tpmt" >/dev/null
tpm2_readpublic -c 0x81010016 -f tpmt -o "$out/p384-ek.tpmt" >/dev/null
openssl verify -CAfile "$out/swtpm-root.pem" -untrusted "$out/swtpm-intermediate.pem" \
  "$out/rsa2048-ek.der" "$out/p384-ek.der"
openssl x509 -inform der -in "$out/rsa2048-ek.der" -pubkey -noout >rsa.pub.pem
openssl x509 -inform der -in "$out/p384-ek.der" -pubkey -noout >p384.pub.pem

# 3. Other CAs, issuing certificates for the same EKs the way vendors do (empty subject,
#    critical SAN directoryName, EKU 2.23.133.8.1): openssl x509 -new -force_pubkey.
openssl ecparam -name secp384r1 -genkey -noout -out vendor-root.key
openssl req -x509 -new -key vendor-root.key -sha384 -days 3650 \
  -subj "/C=XX/O=Other TPM Vendor/CN=Other TPM Vendor EK Root" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$out/vendor-root.pem"
openssl ecparam -name prime256v1 -genkey -noout -out vendor-int.key
openssl req -new -key vendor-int.key -out vendor-int.csr \
  -subj "/C=XX/O=Other TPM Vendor/CN=Other TPM Vendor EK Intermediate 01"
openssl x509 -req -in vendor-int.csr -CA "$out/vendor-root.pem" -CAkey vendor-root.key -sha384 \
  -days 3650 -set_serial 2 -extfile "$out/ca.ext" -out "$out/vendor-int.pem"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out pss-root.key 2>/dev/null
openssl req -x509 -new -key pss-root.key -sha512 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:64 \
  -subj "/O=PSS TPM Vendor/CN=PSS TPM Vendor Root" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
  -out "$out/pss-root.pem"
openssl ecparam -name secp384r1 -genkey -noout -out other.key
openssl ec -in other.key -pubout -out other.pub.pem 2>/dev/null

leaf() { # PUBKEY CA CAKEY DIGEST DAYS SERIAL EXTFILE OUT [extra args]
  local pub=$1 ca=$2 key=$3 md=$4 days=$5 serial=$6 ext=$7 dst=$8
  shift 8
  openssl x509 -new -force_pubkey "$pub" -subj "/" -CA "$ca" -CAkey "$key" "-$md" "$@" \
    -days "$days" -set_serial "$serial" -extfile "$out/$ext" -out "$out/$dst"
}
leaf p384.pub.pem "$out/vendor-root.pem" vendor-root.key sha384 3650 0x1234 leaf.ext p384-ek-othervendor.pem
leaf rsa.pub.pem "$out/vendor-int.pem" vendor-int.key sha256 3650 0x5678 leaf-rsa.ext rsa2048-ek-othervendor-int.pem
leaf rsa.pub.pem "$out/pss-root.pem" pss-root.key sha256 3650 7 leaf-rsa.ext rsa2048-ek-pss.pem \
  -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32
leaf other.pub.pem "$out/vendor-root.pem" vendor-root.key sha384 3650 9 leaf.ext p384-ek-wrongkey.pem
leaf p384.pub.pem "$out/vendor-root.pem" vendor-root.key sha384 1 10 leaf.ext p384-ek-oneday.pem
leaf p384.pub.pem "$out/vendor-root.pem" vendor-root.key sha1 3650 11 leaf.ext p384-ek-sha1.pem
