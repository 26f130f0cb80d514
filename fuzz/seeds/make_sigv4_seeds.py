#!/usr/bin/env python3
"""Writes fuzz/corpus/sigv4 seeds: requests signed by botocore's own SigV4
signer (as the AWS CLI sends them) at the instant the fuzz target takes as
"now" (2026-01-01T00:00:00Z), under the target's test key."""
import datetime
import hashlib
import os
import sys
from unittest import mock

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

KEY_ID = "AKIAFUZZ0000EXAMPLE"
SECRET = "fuzzSecretKey/EXAMPLE+0123456789abcdefghij"
NOW = datetime.datetime(2026, 1, 1, 0, 0, 0)
HOST = "127.0.0.1:4566"
UA = "aws-cli/2.15.0 Python/3.11.2 Linux/6.1.0 exe/x86_64.debian.12 prompt/off command/kms.encrypt"

REQUESTS = [
    # (service, method, path?query, headers, body)
    ("kms", "POST", "/", {"X-Amz-Target": "TrentService.Encrypt", "Content-Type": "application/x-amz-json-1.1"},
     b'{"KeyId": "alias/ferry/fuzz", "Plaintext": "aGVsbG8=", "EncryptionContext": {"aws:ecs:clusterName": "default"}}'),
    ("kms", "POST", "/", {"X-Amz-Target": "TrentService.Decrypt", "Content-Type": "application/x-amz-json-1.1"},
     b'{"CiphertextBlob": "RktNUwEAAA=="}'),
    ("ecs", "POST", "/", {"X-Amz-Target": "AmazonEC2ContainerServiceV20141113.RunTask", "Content-Type": "application/x-amz-json-1.1"},
     b'{"cluster": "default", "taskDefinition": "fargate-task-definition:1", "count": 1, "launchType": "FARGATE", "platformVersion": "1.4.0", "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-12345678"], "securityGroups": ["sg-12345678"]}}}'),
    ("logs", "POST", "/", {"X-Amz-Target": "Logs_20140328.GetLogEvents", "Content-Type": "application/x-amz-json-1.1"},
     b'{"logGroupName": "/ecs/fargate-task-definition", "logStreamName": "ecs/sample-fargate-app/abc", "startFromHead": true}'),
    ("sts", "POST", "/", {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
     b"Action=GetCallerIdentity&Version=2011-06-15"),
    ("iam", "POST", "/", {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
     b"Action=CreateRole&Version=2010-05-08&RoleName=ecsTaskExecutionRole&AssumeRolePolicyDocument=%7B%22Version%22%3A%222012-10-17%22%7D"),
    ("elasticfilesystem", "GET", "/2015-02-01/file-systems?MaxItems=10&CreationToken=a%20b%2Fc~d", {}, b""),
    ("elasticfilesystem", "DELETE", "/2015-02-01/file-systems/fs-0123456789abcdef0", {}, b""),
    ("ecr", "POST", "/", {"X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken", "Content-Type": "application/x-amz-json-1.1"},
     b"{}"),
    ("secretsmanager", "POST", "/", {"X-Amz-Target": "secretsmanager.GetSecretValue", "Content-Type": "application/x-amz-json-1.1"},
     b'{"SecretId": "prod/db"}'),
]


def raw(req, body):
    line = f"{req.method} {req.url.split(HOST, 1)[1] or '/'} HTTP/1.1\r\n"
    line += f"Host: {HOST}\r\nAccept-Encoding: identity\r\n"
    headers = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    return (line + headers + "\r\n").encode() + body


def main(out):
    os.makedirs(out, exist_ok=True)
    creds = Credentials(KEY_ID, SECRET)
    fake = mock.Mock(wraps=datetime.datetime)
    fake.utcnow.return_value = NOW
    fake.now.return_value = NOW.replace(tzinfo=datetime.timezone.utc)
    with mock.patch.object(botocore.auth.datetime, "datetime", fake):
        for service, method, path, headers, body in REQUESTS:
            req = AWSRequest(method=method, url=f"http://{HOST}{path}", data=body,
                             headers={**headers, "User-Agent": UA})
            if body:
                req.headers["Content-Length"] = str(len(body))
            botocore.auth.SigV4Auth(creds, service, "us-east-1").add_auth(req)
            data = raw(req, body)
            name = hashlib.sha1(data).hexdigest()
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/sigv4")
