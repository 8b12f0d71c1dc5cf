"""Resident memory of a long batched run, with and without returning freed heap pages.

    python benchmarks/batched_memory.py none    # the allocator left alone
    python benchmarks/batched_memory.py trim    # malloc_trim(0) every 50 steps

Prints the resident memory (MB) every 100 of 600 steps and the wall time. Run each mode in its
own process. (BatchedTrainer.fit trims by itself; this script calls train_step directly so
that both modes can be compared.)
"""

import ctypes, sys, time, torch
torch.set_num_threads(1)
from genvae.batched import BatchedTrainer, member_configs
trim = sys.argv[1] == "trim"
cfgs, data = member_configs("intro", "8gaussians", seeds=[0,1,2], overrides=[{"num_vae":0}], train={"batch_size":512}, arch={"hidden":256})
bt = BatchedTrainer(cfgs, data)
libc = ctypes.CDLL("libc.so.6")
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
t=time.time(); out=[]
for i in range(1, 601):
    bt.train_step()
    if trim and i % 50 == 0: libc.malloc_trim(0)
    if i % 100 == 0: out.append(round(rss()))
print(sys.argv[1], out, round(time.time()-t))
