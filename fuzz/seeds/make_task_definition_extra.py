import json,hashlib,os
out="fuzz/corpus/task_definition"
base={"family":"fuzz-all","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],"cpu":"1 vCPU","memory":"2 GB",
 "executionRoleArn":"arn:aws:iam::012345678910:role/ecsTaskExecutionRole","taskRoleArn":"app-role",
 "ephemeralStorage":{"sizeInGiB":21},
 "runtimePlatform":{"operatingSystemFamily":"LINUX","cpuArchitecture":"X86_64"},
 "volumes":[{"name":"data","efsVolumeConfiguration":{"fileSystemId":"fs-0123456789abcdef0","rootDirectory":"/","transitEncryption":"ENABLED","authorizationConfig":{"accessPointId":"fsap-0123456789abcdef0","iam":"ENABLED"}}},{"name":"scratch"}],
 "containerDefinitions":[{"name":"app","image":"127.0.0.1:4566/web:v1","essential":True,"cpu":512,"memory":1024,"memoryReservation":512,
   "portMappings":[{"containerPort":80,"hostPort":80,"protocol":"tcp"}],"command":["sh","-c","echo hi"],"entryPoint":["/bin/sh"],
   "environment":[{"name":"A","value":"b"}],"secrets":[{"name":"DB","valueFrom":"arn:aws:secretsmanager:us-east-1:012345678910:secret:prod/db-AbCdEf:password::"},{"name":"P","valueFrom":"/app/param"}],
   "mountPoints":[{"sourceVolume":"data","containerPath":"/data","readOnly":False},{"sourceVolume":"scratch","containerPath":"/scratch"}],
   "healthCheck":{"command":["CMD-SHELL","wget -q -O- http://localhost/ || exit 1"],"interval":5,"timeout":2,"retries":3,"startPeriod":0},
   "dependsOn":[{"containerName":"init","condition":"SUCCESS"}],"workingDirectory":"/srv","user":"1000:1000","readonlyRootFilesystem":False,
   "ulimits":[{"name":"nofile","softLimit":1024,"hardLimit":4096}],
   "linuxParameters":{"capabilities":{"add":["SYS_PTRACE"],"drop":["NET_RAW"]},"initProcessEnabled":True},
   "logConfiguration":{"logDriver":"awslogs","options":{"awslogs-group":"/ecs/fuzz","awslogs-region":"us-east-1","awslogs-stream-prefix":"ecs","awslogs-create-group":"true"}}},
  {"name":"init","image":"busybox","essential":False,"command":["true"]}],
 "tags":[{"key":"team","value":"payments"}]}
variants=[base]
import copy
for patch in [{"pidMode":"host"},{"ipcMode":"host"},{"cpu":"-256"},{"memory":"0"},{"ephemeralStorage":{"sizeInGiB":201}}]:
    v=copy.deepcopy(base); v.update(patch); variants.append(v)
for cpatch in [{"privileged":True},{"devices":[{"hostPath":"/dev/fuse"}]},{"linuxParameters":{"capabilities":{"add":["SYS_ADMIN"]}}},{"cpu":-1}]:
    v=copy.deepcopy(base); v["containerDefinitions"][0].update(cpatch); variants.append(v)
v=copy.deepcopy(base); v["volumes"].append({"name":"bad name!"}); variants.append(v)
for v in variants:
    d=json.dumps(v,separators=(",",":")).encode()
    open(os.path.join(out,hashlib.sha1(d).hexdigest()),"wb").write(d)
