# Random-interleaving model of the mbarrier protocol of flash_tma_p
# (kernels/attention_sm90a.cu); python3 protocol_sim.py prints "ok".
# Random-interleaving model of flash_tma_p's mbarrier protocol (producer,
# NWG consumer warpgroups of 4 warps, copy engine), checking data pairing.
import random
NS=3
class Bar:
    def __init__(s,count): s.count=count; s.pend=count; s.tx=0; s.phase=0
    def arrive(s):
        s.pend-=1; s.check()
    def expect(s,b): s.tx+=b; s.pend-=1; s.check()
    def complete_tx(s,b): s.tx-=b; s.check()
    def check(s):
        assert s.pend>=0
        if s.pend==0 and s.tx==0: s.phase+=1; s.pend=s.count
    def done(s,par): return (s.phase&1)!=par  # phase with parity par completed
def run(nkb,nitems,seed,NWG=2):
    rnd=random.Random(seed)
    full=[Bar(1) for _ in range(NS)]; empty=[Bar(NWG*4) for _ in range(NS)]
    qfull=Bar(1); qempty=Bar(NWG*4)
    slot=[None]*NS; qbuf=[None]
    inflight=[]  # (bar, kind, idx, value)
    def producer():
        g=0
        for it in range(nitems):
            for j in range(nkb):
                st=g%NS
                if g>=NS:
                    while not empty[st].done(((g//NS)-1)&1): yield
                full[st].expect(2)
                slot[st]='busy'; inflight.append((full[st],'kv',st,(it,j)))
                if j==0:
                    if it>0:
                        while not qempty.done((it-1)&1): yield
                    qfull.expect(1)
                    qbuf[0]='busy'; inflight.append((qfull,'q',0,it))
                g+=1; yield
    def warp(wg):
        # each warp of the warpgroup runs in lockstep (wgmma is warpgroup-wide): model WG as one actor arriving 4x
        g=0
        for it in range(nitems):
            while not qfull.done(it&1): yield
            def wait_tile(gg):
                while not full[gg%NS].done((gg//NS)&1): yield
            # S_0
            yield from wait_tile(g)
            assert slot[g%NS]==(it,0), (slot[g%NS],it,0); assert qbuf[0]==it
            yield
            if nkb==1:
                for _ in range(4): qempty.arrive()
            for j in range(nkb-1):
                st=(g+j)%NS; sn=(g+j+1)%NS
                yield from wait_tile(g+j+1)
                assert slot[sn]==(it,j+1); assert qbuf[0]==it  # Q·K_{j+1}
                assert slot[st]==(it,j)  # P_j·V_j reads
                yield
                if j+2==nkb:
                    for _ in range(4): qempty.arrive()
                yield
                assert slot[st]==(it,j)
                for _ in range(4): empty[st].arrive()
            st=(g+nkb-1)%NS
            assert slot[st]==(it,nkb-1)
            yield
            assert slot[st]==(it,nkb-1)
            for _ in range(4): empty[st].arrive()
            g+=nkb
            yield
    actors=[producer()]+[warp(w) for w in range(NWG)]
    alive=list(actors); steps=0
    while alive or inflight:
        steps+=1; assert steps<10**6, "deadlock"
        if inflight and (not alive or rnd.random()<0.3):
            k=rnd.randrange(len(inflight)); bar,kind,idx,val=inflight.pop(k)
            if kind=='kv': slot[idx]=val; bar.complete_tx(2)
            else: qbuf[0]=val; bar.complete_tx(1)
            continue
        a=rnd.choice(alive)
        try: next(a)
        except StopIteration: alive.remove(a)
    return steps
for nkb in [1,2,3,4,5,8]:
    for nitems in [1,2,3,7]:
        for seed in range(200):
            run(nkb,nitems,seed)
print("ok")
