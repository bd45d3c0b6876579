// One user's session with the AWS SDK for JavaScript v3 (@aws-sdk/client-ec2) against econe:
// images, a two-instance launch with a client token, the SDK's own waiters through
// stop/start/reboot, status checks, an instance saved as an AMI, instance attributes and types,
// tags, a key pair, an elastic IP, paginated listing, errors, termination.
// Prints one JSON object of what the SDK returned; tests/clients/test_js_sdk.py checks it.
//
//   ECONE_ENDPOINT=http://127.0.0.1:4567 ECONE_KEY=demo ECONE_SECRET=… node ec2_flow.mjs
import {
  EC2Client,
  DescribeRegionsCommand,
  DescribeAvailabilityZonesCommand,
  DescribeImagesCommand,
  RunInstancesCommand,
  DescribeInstancesCommand,
  StopInstancesCommand,
  StartInstancesCommand,
  RebootInstancesCommand,
  TerminateInstancesCommand,
  CreateTagsCommand,
  CreateKeyPairCommand,
  DescribeKeyPairsCommand,
  DeleteKeyPairCommand,
  AllocateAddressCommand,
  AssociateAddressCommand,
  DescribeAddressesCommand,
  DisassociateAddressCommand,
  ReleaseAddressCommand,
  DescribeInstanceStatusCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstanceTypesCommand,
  CreateImageCommand,
  paginateDescribeInstances,
  waitUntilInstanceStatusOk,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
  waitUntilInstanceTerminated,
} from "@aws-sdk/client-ec2";

const endpoint = process.env.ECONE_ENDPOINT;
const key = process.env.ECONE_KEY;
const secret = process.env.ECONE_SECRET;

function client(accessKeyId, secretAccessKey) {
  return new EC2Client({
    endpoint,
    region: "opennebula",
    credentials: { accessKeyId, secretAccessKey },
    maxAttempts: 1,
  });
}

const ec2 = client(key, secret);
const waits = { client: ec2, maxWaitTime: 120, minDelay: 1, maxDelay: 1 };

// What the SDK makes of an error answer: its class name, HTTP status and message.
async function failure(command, on = ec2) {
  try {
    await on.send(command);
    return null;
  } catch (err) {
    return { name: err.name, status: err.$metadata?.httpStatusCode, message: err.message };
  }
}

const instances = async (ids) =>
  (await ec2.send(new DescribeInstancesCommand({ InstanceIds: ids }))).Reservations.flatMap(
    (r) => r.Instances,
  );

const out = {};

out.regions = (await ec2.send(new DescribeRegionsCommand({}))).Regions.map((r) => r.RegionName);
out.zones = (await ec2.send(new DescribeAvailabilityZonesCommand({}))).AvailabilityZones.map(
  (z) => z.ZoneName,
);
const images = (await ec2.send(new DescribeImagesCommand({}))).Images;
out.images = images.map((i) => i.ImageId);
const ami = images[0].ImageId;

const launch = {
  ImageId: ami,
  MinCount: 2,
  MaxCount: 2,
  InstanceType: "m1.small",
  UserData: Buffer.from("#cloud-config\nhostname: js-sdk\n").toString("base64"),
  ClientToken: `js-sdk-${process.pid}`,
};
const first = await ec2.send(new RunInstancesCommand(launch));
const again = await ec2.send(new RunInstancesCommand(launch));
const ids = first.Instances.map((i) => i.InstanceId);
out.run = {
  reservation: first.ReservationId,
  ids,
  types: first.Instances.map((i) => i.InstanceType),
  images: first.Instances.map((i) => i.ImageId),
  retry_reservation: again.ReservationId,
  retry_ids: again.Instances.map((i) => i.InstanceId),
};

await waitUntilInstanceRunning(waits, { InstanceIds: ids });
const running = await instances(ids);
out.running = running.map((i) => ({
  id: i.InstanceId,
  state: i.State.Name,
  code: i.State.Code,
  ip: i.PrivateIpAddress ?? null,
  launch: i.LaunchTime instanceof Date ? i.LaunchTime.toISOString() : null,
  zone: i.Placement?.AvailabilityZone ?? null,
}));

await waitUntilInstanceStatusOk(waits, { InstanceIds: ids });
const statuses = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: ids }));
out.status = statuses.InstanceStatuses.map((s) => [
  s.InstanceState.Name,
  s.InstanceStatus.Status,
  s.SystemStatus.Status,
]);
const attribute = (name) =>
  ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: ids[0], Attribute: name }));
out.attributes = {
  type: (await attribute("instanceType")).InstanceType?.Value ?? null,
  protection: (await attribute("disableApiTermination")).DisableApiTermination?.Value ?? null,
};
const types = await ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: ["m1.small"] }));
out.types = types.InstanceTypes.map((t) => [
  t.InstanceType,
  t.VCpuInfo.DefaultVCpus,
  t.MemoryInfo.SizeInMiB,
]);
const saved = await ec2.send(
  new CreateImageCommand({ InstanceId: ids[1], Name: `js-sdk-${process.pid}` }),
);
await waitUntilImageAvailable(waits, { ImageIds: [saved.ImageId] });
out.image = (await ec2.send(new DescribeImagesCommand({ ImageIds: [saved.ImageId] }))).Images.map(
  (i) => [i.ImageId, i.Name, i.State],
);

const filtered = await ec2.send(
  new DescribeInstancesCommand({
    Filters: [
      { Name: "instance-state-name", Values: ["running"] },
      { Name: "instance-type", Values: ["m1.small"] },
    ],
  }),
);
out.filtered = filtered.Reservations.flatMap((r) => r.Instances.map((i) => i.InstanceId));

const stopped = await ec2.send(new StopInstancesCommand({ InstanceIds: [ids[0]] }));
out.stopping = stopped.StoppingInstances.map((c) => [c.PreviousState.Name, c.CurrentState.Name]);
await waitUntilInstanceStopped(waits, { InstanceIds: [ids[0]] });
out.stopped = (await instances([ids[0]])).map((i) => i.State.Name);
const started = await ec2.send(new StartInstancesCommand({ InstanceIds: [ids[0]] }));
out.starting = started.StartingInstances.map((c) => c.CurrentState.Name);
await waitUntilInstanceRunning(waits, { InstanceIds: [ids[0]] });
out.restarted = (await instances([ids[0]])).map((i) => i.State.Name);
out.reboot = (await ec2.send(new RebootInstancesCommand({ InstanceIds: [ids[1]] }))).$metadata
  .httpStatusCode;

await ec2.send(
  new CreateTagsCommand({ Resources: [ids[0]], Tags: [{ Key: "role", Value: "web & <db>" }] }),
);
out.tags = (await instances([ids[0]]))[0].Tags ?? [];

const pair = await ec2.send(new CreateKeyPairCommand({ KeyName: `js-${process.pid}` }));
out.keypair = {
  name: pair.KeyName,
  fingerprint: pair.KeyFingerprint,
  pem: pair.KeyMaterial.startsWith("-----BEGIN"),
  listed: (await ec2.send(new DescribeKeyPairsCommand({ KeyNames: [pair.KeyName] }))).KeyPairs.map(
    (k) => k.KeyName,
  ),
};
await ec2.send(new DeleteKeyPairCommand({ KeyName: pair.KeyName }));

const address = await ec2.send(new AllocateAddressCommand({}));
const association = await ec2.send(
  new AssociateAddressCommand({ PublicIp: address.PublicIp, InstanceId: ids[0] }),
);
out.address = {
  ip: address.PublicIp,
  associated: (await ec2.send(new DescribeAddressesCommand({ PublicIps: [address.PublicIp] })))
    .Addresses.map((a) => a.InstanceId),
  association_status: association.$metadata.httpStatusCode,
  instance_public_ip: (await instances([ids[0]]))[0].PublicIpAddress ?? null,
};
await ec2.send(new DisassociateAddressCommand({ PublicIp: address.PublicIp }));
await ec2.send(new ReleaseAddressCommand({ PublicIp: address.PublicIp }));

// Four more, so that pages of five need two pages.
const more = await ec2.send(
  new RunInstancesCommand({ ImageId: ami, MinCount: 4, MaxCount: 4, InstanceType: "m1.small" }),
);
const all = [...ids, ...more.Instances.map((i) => i.InstanceId)];
let pages = 0;
const paged = [];
for await (const page of paginateDescribeInstances({ client: ec2, pageSize: 5 }, {})) {
  pages += 1;
  for (const r of page.Reservations) paged.push(...r.Instances.map((i) => i.InstanceId));
}
out.paginated = { pages, ids: paged };

out.errors = {
  not_found: await failure(new DescribeInstancesCommand({ InstanceIds: ["i-99999999"] })),
  malformed: await failure(new DescribeInstancesCommand({ InstanceIds: ["i-nothex"] })),
  bad_filter: await failure(
    new DescribeInstancesCommand({ Filters: [{ Name: "no-such-filter", Values: ["x"] }] }),
  ),
  missing: await failure(new StopInstancesCommand({})),
  dry_run: await failure(new StopInstancesCommand({ InstanceIds: [ids[0]], DryRun: true })),
  wrong_secret: await failure(new DescribeRegionsCommand({}), client(key, "0".repeat(64))),
  unknown_key: await failure(new DescribeRegionsCommand({}), client("nobody-here", secret)),
};

const terminated = await ec2.send(new TerminateInstancesCommand({ InstanceIds: all }));
out.terminating = terminated.TerminatingInstances.map((c) => c.CurrentState.Name);
await waitUntilInstanceTerminated(waits, { InstanceIds: all });
out.terminated = (await instances(all)).map((i) => i.State.Name);

process.stdout.write(JSON.stringify(out) + "\n");
