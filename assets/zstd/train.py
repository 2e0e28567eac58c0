#!/usr/bin/env python3
"""Trains messages-v1.dict, the zstd dictionary stored message bodies are
compressed with (body_format 1, src/storage/stored_body.rs):

    python3 assets/zstd/train.py            # writes assets/zstd/messages-v1.dict

Samples are consumption messages shaped like the ones producers send (the
contract's example, tests/fixtures/messages, the demo's traffic): both
pretty-printed and compact JSON, 1-8 datapoints, meters of several markets,
three messageId styles (meter + timestamp, counters, UUIDs). Seeded, so the
same zstd version writes the same dictionary. NEVER retrain over
messages-v1.dict once released: stored rows name it; a new dictionary is a
new file and a new body_format.
"""
import datetime, json, pathlib, random, shutil, subprocess, tempfile, uuid

HERE = pathlib.Path(__file__).resolve().parent
rng = random.Random(14)
MARKETS = [("lu", "electricity", "VPC", "LU_VPC_Elec_"), ("lu", "electricity", "VPC", "LU_VPC_Temp_"),
           ("hu", "electricity", "1001", "HU_1001_Elec_"), ("hu", "gas", "1002", "HU_1002_Gas_"),
           ("de", "electricity", "4711", "DE_4711_Elec_")]
KEYS = ["activeEnergyImport", "activeEnergyImport", "activeEnergyExport", "reactiveEnergyImport", "temperature"]


def sample(i: int) -> str:
    market, feed, site, prefix = rng.choice(MARKETS)
    meter = f"{prefix}{rng.randint(1, 10000)}"
    start = datetime.datetime(2021, 1, 1) + datetime.timedelta(minutes=15 * rng.randint(0, 200000))
    key = rng.choice(KEYS)
    value = rng.uniform(0, 100000)
    points = []
    for k in range(rng.choice([1, 4, 4, 4, 4, 8])):
        value += rng.uniform(0, 5)
        ts = (start + datetime.timedelta(minutes=15 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
        points.append({"datapointKey": key, "value": round(value, rng.choice([0, 2, 3])), "tsIso8601": ts})
    message_id = rng.choice([f"{feed}_{market}_{start:%Y%m%dT%H%M}", f"{meter}_{start:%Y%m%dT%H%M}",
                             f"msg_{rng.randint(1, 10**9)}", str(uuid.UUID(int=rng.getrandbits(128), version=4))])
    message = {"messageType": "consumption",
               "header": {"messageId": message_id, "gatewayTypeUrn": f"urn:esight:assets:edm:{market}:{feed}",
                          "gatewayUrn": f"urn:esight:gateways:edm:{market}:{site}:{meter}"},
               "gatewayData": {"datapointValues": points}}
    return json.dumps(message, indent=1) if i % 2 == 0 else json.dumps(message)


def main() -> None:
    work = pathlib.Path(tempfile.mkdtemp())
    try:
        for i in range(4000):
            (work / f"{i}.json").write_text(sample(i))
        out = HERE / "messages-v1.dict"
        subprocess.run(["zstd", "-q", "-f", "--train", *sorted(map(str, work.iterdir())), "--maxdict=8192",
                        "-o", str(out)], check=True)
        print(f"wrote {out} ({out.stat().st_size} bytes)")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
