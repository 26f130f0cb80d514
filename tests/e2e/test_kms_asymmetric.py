"""KMS asymmetric, HMAC and imported keys through the real AWS CLI and boto3
against a real `ferry server`, cross-checked with independent tools: the
`openssl` command line verifies ferry's signatures with the GetPublicKey
DER and makes a ciphertext ferry decrypts; Python's `hmac` checks a MAC;
the `cryptography` package wraps key material for import."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

# The module's server and clients are test_kms's fixtures (one server for
# this file).
from test_kms import error_code, kms, raw_kms, srv  # noqa: F401

RSA_SIGNING = [
    "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
    "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
]
ECC = {
    "ECC_NIST_P256": "ECDSA_SHA_256",
    "ECC_NIST_P384": "ECDSA_SHA_384",
    "ECC_NIST_P521": "ECDSA_SHA_512",
    "ECC_SECG_P256K1": "ECDSA_SHA_256",
}


def fileb(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return f"fileb://{p}"


def pem_of(tmp_path, der, name="pub.pem"):
    """The GetPublicKey DER as a PEM file, converted by openssl itself."""
    d = tmp_path / (name + ".der")
    d.write_bytes(der)
    p = tmp_path / name
    subprocess.run(["openssl", "pkey", "-pubin", "-inform", "DER", "-in", str(d), "-out", str(p)],
                   check=True, capture_output=True)
    return p


def openssl_verify(tmp_path, pem, alg, message, signature):
    """`openssl dgst -verify` with the algorithm's hash and padding."""
    bits = alg[-3:]
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(signature)
    cmd = ["openssl", "dgst", f"-sha{bits}", "-verify", str(pem), "-signature", str(tmp_path / "sig")]
    if alg.startswith("RSASSA_PSS"):
        cmd += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
    cmd.append(str(tmp_path / "msg"))
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode == 0 and "Verified OK" in p.stdout


# -- keys: specs, usages, metadata ------------------------------------------------

def test_cli_creates_every_spec_with_the_metadata_aws_shows(srv):
    for spec, usage, field, algs in [
        ("RSA_2048", "SIGN_VERIFY", "SigningAlgorithms", RSA_SIGNING),
        ("RSA_4096", "ENCRYPT_DECRYPT", "EncryptionAlgorithms", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]),
        ("ECC_NIST_P521", "SIGN_VERIFY", "SigningAlgorithms", ["ECDSA_SHA_512"]),
        ("HMAC_224", "GENERATE_VERIFY_MAC", "MacAlgorithms", ["HMAC_SHA_224"]),
    ]:
        m = srv.aws("kms", "create-key", "--key-spec", spec, "--key-usage", usage)["KeyMetadata"]
        assert m["KeySpec"] == spec and m["CustomerMasterKeySpec"] == spec
        assert m["KeyUsage"] == usage and m["KeyState"] == "Enabled" and m["Origin"] == "AWS_KMS"
        assert sorted(m[field]) == sorted(algs), (spec, m)
        d = srv.aws("kms", "describe-key", "--key-id", m["KeyId"])["KeyMetadata"]
        assert d["KeySpec"] == spec and sorted(d[field]) == sorted(algs)
        for other in {"SigningAlgorithms", "EncryptionAlgorithms", "MacAlgorithms"} - {field}:
            assert other not in d
        # Rotation is for symmetric keys only.
        err = srv.aws_error("kms", "enable-key-rotation", "--key-id", m["KeyId"])
        assert err.code == "UnsupportedOperationException"


def test_invalid_combinations_and_enum_values_are_refused(kms, raw_kms):
    for spec, usage in [("ECC_NIST_P256", "ENCRYPT_DECRYPT"), ("HMAC_256", "SIGN_VERIFY"),
                        ("SYMMETRIC_DEFAULT", "GENERATE_VERIFY_MAC"), ("ECC_SECG_P256K1", "GENERATE_VERIFY_MAC")]:
        code, msg = error_code(kms.create_key, KeySpec=spec, KeyUsage=usage)
        assert code == "ValidationException", (spec, usage, code, msg)
    # Without KeyUsage the key is ENCRYPT_DECRYPT, which an HMAC key is not.
    assert error_code(kms.create_key, KeySpec="HMAC_256")[0] == "ValidationException"
    # Values outside the model, past botocore's own checks.
    for kw in [{"KeySpec": "RSA_1024"}, {"KeyUsage": "MAC"}, {"Origin": "HSM"}]:
        code, msg = error_code(raw_kms.create_key, **kw)
        assert code == "ValidationException" and "enum value set" in msg, (kw, msg)
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    for kw in [{"SigningAlgorithm": "ECDSA_SHA_1"}, {"SigningAlgorithm": "ECDSA_SHA_256", "MessageType": "HASH"}]:
        code, msg = error_code(raw_kms.sign, KeyId=key, Message=b"m", **kw)
        assert code == "ValidationException" and "enum value set" in msg, (kw, msg)
    code, _ = error_code(raw_kms.generate_data_key_pair, KeyId=key, KeyPairSpec="RSA_512")
    assert code == "ValidationException"
    code, _ = error_code(raw_kms.get_parameters_for_import, KeyId=key, WrappingAlgorithm="AES",
                         WrappingKeySpec="RSA_2048")
    assert code == "ValidationException"


# -- Sign / Verify, checked by openssl --------------------------------------------

@pytest.mark.parametrize("spec", ["RSA_2048", "RSA_3072", "RSA_4096", *ECC])
def test_signatures_verify_with_openssl(srv, kms, tmp_path, spec):
    key = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    pub = kms.get_public_key(KeyId=key)
    assert pub["KeySpec"] == spec and pub["KeyUsage"] == "SIGN_VERIFY"
    pem = pem_of(tmp_path, pub["PublicKey"])
    algs = RSA_SIGNING if spec.startswith("RSA") else [ECC[spec]]
    assert sorted(pub["SigningAlgorithms"]) == sorted(algs)
    msg = os.urandom(300)
    for alg in algs:
        sig = kms.sign(KeyId=key, Message=msg, SigningAlgorithm=alg)
        assert sig["SigningAlgorithm"] == alg and sig["KeyId"] == key
        assert openssl_verify(tmp_path, pem, alg, msg, sig["Signature"]), (spec, alg)
        assert not openssl_verify(tmp_path, pem, alg, msg + b"x", sig["Signature"])
        # DIGEST: sign the hash; openssl verifies it as a signature of the message.
        digest = hashlib.new("sha" + alg[-3:], msg).digest()
        dsig = kms.sign(KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm=alg)["Signature"]
        assert openssl_verify(tmp_path, pem, alg, msg, dsig), (spec, alg)
        assert kms.verify(KeyId=key, Message=msg, Signature=dsig, SigningAlgorithm=alg)["SignatureValid"]
        bad = bytearray(sig["Signature"])
        bad[-1] ^= 1
        code, _ = error_code(kms.verify, KeyId=key, Message=msg, Signature=bytes(bad), SigningAlgorithm=alg)
        assert code == "KMSInvalidSignatureException"
        code, msg_ = error_code(kms.sign, KeyId=key, Message=digest[:-1], MessageType="DIGEST", SigningAlgorithm=alg)
        assert code == "ValidationException" and "Digest is invalid length" in msg_
    wrong = "ECDSA_SHA_256" if spec.startswith("RSA") else "RSASSA_PSS_SHA_256"
    assert error_code(kms.sign, KeyId=key, Message=b"m", SigningAlgorithm=wrong)[0] == "InvalidKeyUsageException"


def test_cli_sign_and_verify_and_their_errors(srv, kms, tmp_path):
    key = srv.aws("kms", "create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    srv.aws("kms", "create-alias", "--alias-name", "alias/jwt", "--target-key-id", key)
    msg = fileb(tmp_path, "m", b"header.payload")
    sig = srv.aws("kms", "sign", "--key-id", "alias/jwt", "--message", msg,
                  "--signing-algorithm", "ECDSA_SHA_256")["Signature"]
    sigf = fileb(tmp_path, "s", base64.b64decode(sig))
    ok = srv.aws("kms", "verify", "--key-id", "alias/jwt", "--message", msg, "--signature", sigf,
                 "--signing-algorithm", "ECDSA_SHA_256")
    assert ok["SignatureValid"] is True
    err = srv.aws_error("kms", "verify", "--key-id", key, "--message", fileb(tmp_path, "m2", b"other"),
                        "--signature", sigf, "--signing-algorithm", "ECDSA_SHA_256")
    assert err.code == "KMSInvalidSignatureException"
    # A RAW message over 4096 bytes is refused by the model's length.
    err = srv.aws_error("kms", "sign", "--key-id", key, "--message", fileb(tmp_path, "big", b"x" * 4097),
                        "--signing-algorithm", "ECDSA_SHA_256")
    assert err.code == "ValidationException", err.stderr
    # Wrong key usage: encrypting with a signing key, signing with a symmetric one.
    err = srv.aws_error("kms", "encrypt", "--key-id", key, "--plaintext", fileb(tmp_path, "p", b"x"))
    assert err.code == "InvalidKeyUsageException"
    assert "key usage is SIGN_VERIFY which is not valid for Encrypt" in err.message
    sym = kms.create_key()["KeyMetadata"]["KeyId"]
    err = srv.aws_error("kms", "sign", "--key-id", sym, "--message", msg, "--signing-algorithm", "ECDSA_SHA_256")
    assert err.code == "InvalidKeyUsageException"
    err = srv.aws_error("kms", "get-public-key", "--key-id", sym)
    assert err.code == "UnsupportedOperationException"
    # Disabled keys neither sign nor give out their public key.
    kms.disable_key(KeyId=key)
    assert error_code(kms.sign, KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")[0] == "DisabledException"
    assert error_code(kms.get_public_key, KeyId=key)[0] == "DisabledException"


# -- RSAES-OAEP -------------------------------------------------------------------

@pytest.mark.parametrize("spec,limits", [("RSA_2048", (214, 190)), ("RSA_3072", (342, 318)), ("RSA_4096", (470, 446))])
def test_openssl_ciphertexts_decrypt_and_limits_hold(srv, kms, tmp_path, spec, limits):
    key = kms.create_key(KeySpec=spec, KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
    pub = kms.get_public_key(KeyId=key)
    assert pub["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    pem = pem_of(tmp_path, pub["PublicKey"])
    for alg, md, limit in [("RSAES_OAEP_SHA_1", "sha1", limits[0]), ("RSAES_OAEP_SHA_256", "sha256", limits[1])]:
        pt = os.urandom(limit)
        (tmp_path / "pt").write_bytes(pt)
        subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pem),
                        "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}",
                        "-pkeyopt", f"rsa_mgf1_md:{md}",
                        "-in", str(tmp_path / "pt"), "-out", str(tmp_path / "ct")], check=True)
        ct = (tmp_path / "ct").read_bytes()
        out = kms.decrypt(KeyId=key, CiphertextBlob=ct, EncryptionAlgorithm=alg)
        assert out["Plaintext"] == pt and out["EncryptionAlgorithm"] == alg and out["KeyId"] == key
        # The other way: ferry's ciphertext is a raw RSA ciphertext.
        enc = kms.encrypt(KeyId=key, Plaintext=pt, EncryptionAlgorithm=alg)
        assert len(enc["CiphertextBlob"]) == int(spec[4:]) // 8
        assert kms.decrypt(KeyId=key, CiphertextBlob=enc["CiphertextBlob"], EncryptionAlgorithm=alg)["Plaintext"] == pt
        code, _ = error_code(kms.encrypt, KeyId=key, Plaintext=pt + b"x", EncryptionAlgorithm=alg)
        assert code == "ValidationException"
    # The algorithm is required for an asymmetric key; a mismatch is a bad ciphertext.
    assert error_code(kms.decrypt, KeyId=key, CiphertextBlob=ct)[0] == "InvalidKeyUsageException"
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x")[0] == "InvalidKeyUsageException"
    code, msg = error_code(kms.decrypt, KeyId=key, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    assert code == "InvalidCiphertextException" and msg == ""
    # Without KeyId a raw RSA ciphertext names no key: it is read as a
    # symmetric blob, for which an RSA algorithm is the wrong usage, and
    # without the algorithm it is simply not a valid blob.
    assert error_code(kms.decrypt, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")[0] == "InvalidKeyUsageException"
    assert error_code(kms.decrypt, CiphertextBlob=ct)[0] == "InvalidCiphertextException"
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                      EncryptionContext={"a": "b"})[0] == "ValidationException"


# -- HMAC ---------------------------------------------------------------------------

def import_material(kms, key_id, material, wrapping="RSAES_OAEP_SHA_256", spec="RSA_2048", **kw):
    """GetParametersForImport, wrap `material` with `cryptography`, import."""
    params = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=wrapping, WrappingKeySpec=spec)
    assert params["ParametersValidTo"].timestamp() > time.time() + 23 * 3600
    public = serialization.load_der_public_key(params["PublicKey"])
    h = hashes.SHA256() if wrapping.endswith("256") else hashes.SHA1()
    wrapped = public.encrypt(material, padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None))
    kw.setdefault("ExpirationModel", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    return kms.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                   EncryptedKeyMaterial=wrapped, **kw), params


def test_macs_match_python_hmac(srv, kms, tmp_path):
    for spec, alg, hashname, size in [("HMAC_224", "HMAC_SHA_224", "sha224", 28), ("HMAC_256", "HMAC_SHA_256", "sha256", 32),
                                      ("HMAC_384", "HMAC_SHA_384", "sha384", 48), ("HMAC_512", "HMAC_SHA_512", "sha512", 64)]:
        key = kms.create_key(KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC", Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        secret = os.urandom(size)
        import_material(kms, key, secret)
        msg = os.urandom(1000)
        mac = kms.generate_mac(KeyId=key, Message=msg, MacAlgorithm=alg)
        assert mac["Mac"] == hmac.new(secret, msg, hashname).digest(), spec
        assert kms.verify_mac(KeyId=key, Message=msg, MacAlgorithm=alg, Mac=mac["Mac"])["MacValid"] is True
        bad = bytearray(mac["Mac"])
        bad[0] ^= 1
        assert error_code(kms.verify_mac, KeyId=key, Message=msg, MacAlgorithm=alg, Mac=bytes(bad))[0] == "KMSInvalidMacException"
        assert error_code(kms.verify_mac, KeyId=key, Message=msg, MacAlgorithm=alg, Mac=mac["Mac"][:-1])[0] == "KMSInvalidMacException"
    # A KMS-made HMAC key, through the CLI; the wrong algorithm for the spec.
    key = srv.aws("kms", "create-key", "--key-spec", "HMAC_256", "--key-usage", "GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    m = fileb(tmp_path, "m", b"payload")
    mac = srv.aws("kms", "generate-mac", "--key-id", key, "--message", m, "--mac-algorithm", "HMAC_SHA_256")["Mac"]
    ok = srv.aws("kms", "verify-mac", "--key-id", key, "--message", m, "--mac-algorithm", "HMAC_SHA_256",
                 "--mac", fileb(tmp_path, "mac", base64.b64decode(mac)))
    assert ok["MacValid"] is True
    err = srv.aws_error("kms", "generate-mac", "--key-id", key, "--message", m, "--mac-algorithm", "HMAC_SHA_512")
    assert err.code == "InvalidKeyUsageException"
    sym = kms.create_key()["KeyMetadata"]["KeyId"]
    assert error_code(kms.generate_mac, KeyId=sym, Message=b"m", MacAlgorithm="HMAC_SHA_256")[0] == "InvalidKeyUsageException"


# -- data key pairs -------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["RSA_2048", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1"])
def test_data_key_pairs(kms, spec):
    sym = kms.create_key()["KeyMetadata"]["Arn"]
    ec = {"app": "jwt"}
    pair = kms.generate_data_key_pair(KeyId=sym, KeyPairSpec=spec, EncryptionContext=ec)
    assert pair["KeyPairSpec"] == spec and pair["KeyId"] == sym
    private = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public == pair["PublicKey"]
    # The private key is an ordinary blob under the symmetric key.
    assert kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=ec)["Plaintext"] == pair["PrivateKeyPlaintext"]
    assert error_code(kms.decrypt, CiphertextBlob=pair["PrivateKeyCiphertextBlob"])[0] == "InvalidCiphertextException"
    wp = kms.generate_data_key_pair_without_plaintext(KeyId=sym, KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in wp
    private = serialization.load_der_private_key(kms.decrypt(CiphertextBlob=wp["PrivateKeyCiphertextBlob"])["Plaintext"], password=None)
    assert private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) == wp["PublicKey"]


def test_data_key_pair_errors(kms):
    signer = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    assert error_code(kms.generate_data_key_pair, KeyId=signer, KeyPairSpec="RSA_2048")[0] == "InvalidKeyUsageException"
    sym = kms.create_key()["KeyMetadata"]["KeyId"]
    assert error_code(kms.generate_data_key_pair, KeyId=sym, KeyPairSpec="SM2")[0] == "UnsupportedOperationException"
    code, _ = error_code(kms.generate_data_key_pair_without_plaintext, KeyId=sym, KeyPairSpec="RSA_2048", DryRun=True)
    assert code == "DryRunOperationException"


# -- imported key material --------------------------------------------------------------

def test_import_flow_expiry_and_deletion(srv, kms, tmp_path):
    m = kms.create_key(Origin="EXTERNAL", Description="byok")["KeyMetadata"]
    key = m["KeyId"]
    assert m["KeyState"] == "PendingImport" and m["Origin"] == "EXTERNAL" and not m["Enabled"]
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x")[0] == "KMSInvalidStateException"
    assert error_code(kms.enable_key, KeyId=key)[0] == "KMSInvalidStateException"
    material = os.urandom(32)
    # Errors first: no ValidTo with an expiring model; a forged token; bad length.
    params = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_1", WrappingKeySpec="RSA_4096")
    public = serialization.load_der_public_key(params["PublicKey"])
    oaep1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    wrapped = public.encrypt(material, oaep1)
    code, msg = error_code(kms.import_key_material, KeyId=key, ImportToken=params["ImportToken"],
                           EncryptedKeyMaterial=wrapped)
    assert code == "ValidationException" and "validTo" in msg
    code, _ = error_code(kms.import_key_material, KeyId=key, ImportToken=os.urandom(32),
                         EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code == "InvalidImportTokenException"
    code, _ = error_code(kms.import_key_material, KeyId=key, ImportToken=params["ImportToken"],
                         EncryptedKeyMaterial=public.encrypt(os.urandom(16), oaep1),
                         ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code == "IncorrectKeyMaterialException"
    code, _ = error_code(kms.import_key_material, KeyId=key, ImportToken=params["ImportToken"],
                         EncryptedKeyMaterial=os.urandom(512), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code == "InvalidCiphertextException"
    # Imported with an expiry a few seconds ahead.
    valid_to = time.time() + 4
    out = kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                                  ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to)
    d = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert d["KeyState"] == "Enabled" and d["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(d["ValidTo"].timestamp() - valid_to) < 1
    assert d["CurrentKeyMaterialId"] == out["KeyMaterialId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"bring your own key")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"bring your own key"
    # Expiry: PendingImport, and nothing decrypts.
    time.sleep(max(0.0, valid_to - time.time()) + 0.5)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert error_code(kms.decrypt, CiphertextBlob=blob)[0] == "KMSInvalidStateException"
    # Other material is refused; the same material, re-imported, opens the old blob.
    assert error_code(import_material, kms, key, os.urandom(32))[0] == "IncorrectKeyMaterialException"
    import_material(kms, key, material, wrapping="RSAES_OAEP_SHA_256", spec="RSA_3072")
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"bring your own key"
    # The CLI deletes the material.
    out = srv.aws("kms", "delete-imported-key-material", "--key-id", key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert error_code(kms.decrypt, CiphertextBlob=blob)[0] == "KMSInvalidStateException"
    # Import operations need an EXTERNAL key; asymmetric keys take no import.
    sym = kms.create_key()["KeyMetadata"]["KeyId"]
    code, _ = error_code(kms.get_parameters_for_import, KeyId=sym, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                         WrappingKeySpec="RSA_2048")
    assert code == "UnsupportedOperationException"
    assert error_code(kms.delete_imported_key_material, KeyId=sym)[0] == "UnsupportedOperationException"
    code, _ = error_code(kms.create_key, KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY", Origin="EXTERNAL")
    assert code == "UnsupportedOperationException"
    # The audit trail has the import, without its token or material.
    records = srv.audit_records()
    imports = [r for r in records if r["eventName"] == "ImportKeyMaterial"]
    assert imports and all("importToken" not in r["requestParameters"] for r in imports)
    assert all("encryptedKeyMaterial" not in r["requestParameters"] for r in imports)


# -- the rest: description, retirable grants, audit, authorization -------------------

def test_update_description_retirable_grants_and_audit(srv, kms, raw_kms):
    key = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    srv.aws("kms", "update-key-description", "--key-id", key, "--description", "signs tokens")
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["Description"] == "signs tokens"
    assert error_code(raw_kms.update_key_description, KeyId=key)[0] == "ValidationException"
    account = key.split(":")[4]
    retiring = f"arn:aws:iam::{account}:role/rotator"
    g = kms.create_grant(KeyId=key, GranteePrincipal=f"arn:aws:iam::{account}:role/signer",
                         RetiringPrincipal=retiring, Operations=["Sign", "GetPublicKey"])
    listed = srv.aws("kms", "list-retirable-grants", "--retiring-principal", retiring)["Grants"]
    assert [x["GrantId"] for x in listed] == [g["GrantId"]]
    assert listed[0]["KeyId"] == key and listed[0]["Operations"] == ["Sign", "GetPublicKey"]
    assert kms.list_retirable_grants(RetiringPrincipal=f"arn:aws:iam::{account}:role/nobody")["Grants"] == []
    # Sign leaves a record with the algorithm, never the message or signature.
    kms.sign(KeyId=key, Message=b"very secret message", SigningAlgorithm="RSASSA_PSS_SHA_256")
    records = srv.audit_records()
    sign = [r for r in records if r["eventName"] == "Sign"][-1]
    assert sign["requestParameters"] == {"keyId": key, "signingAlgorithm": "RSASSA_PSS_SHA_256"}
    assert sign["responseElements"] is None
    assert sign["resources"][0]["ARN"] == key
    assert base64.b64encode(b"very secret message").decode() not in json.dumps(sign)
