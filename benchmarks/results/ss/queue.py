# build the queue: one line per run: dataset k seed recipe
cells = []
ds = ["lungs_ct", "abdomen_organs_ct", "abdomen_vessels_ct", "abdomen_organs_mri"]
first = ("lungs_ct", 1, 2)
order = [first] + [(d, k, s) for s in (0, 1, 2) for k in (1, 3) for d in ds if (d, k, s) != first]
with open("/work/ss/queue.txt", "w") as f:
    for d, k, s in order:
        for r in ("default", "e-parts"):
            f.write(f"{d} {k} {s} {r} segpl\n")
    for d, k, s in order:
        f.write(f"{d} {k} {s} default supervised\n")
