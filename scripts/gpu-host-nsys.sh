#!/usr/bin/env bash
# On a GPU host without network: unpack an Nsight Systems bundle made by scripts/nsys-offline-bundle.sh
# (top folder nsys-GENERATION; the older 2022.4 bundles use nsysmin) into /opt and make it trace CUDA
# 12/13 programs: the host's own CUPTI (CUDA toolkit, or the nvidia-* pip wheels a CUDA torch brings) is
# copied in beside nsys's as libcupti.so.N and libcupti.so.N.0. nsys 2022.4 ships CUPTI only up to 11.8,
# 2024.2 up to 12.5: without the copy, a CUDA 13 program gives NVTX ranges but no kernels (2022.4,
# measured; 2024.2 still to be measured).
# usage: source gpu-host-nsys.sh BUNDLE.tar.xz    -> exports NSYS=/opt/<top>/target-linux-x64/nsys
bundle=${1:?usage: source gpu-host-nsys.sh BUNDLE.tar.xz}
top=$(tar -tJf "$bundle" 2>/dev/null | head -n1 | cut -d/ -f1 || true)  # tar ends on SIGPIPE here
mkdir -p /opt && tar -xJf "$bundle" -C /opt
t=/opt/$top/target-linux-x64
for c in /usr/local/cuda/targets/x86_64-linux/lib/libcupti.so.* /usr/local/cuda/extras/CUPTI/lib64/libcupti.so.* \
         $(python3 -c 'import glob, os, nvidia; print(" ".join(p for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "*", "lib", "libcupti.so.*"))))' 2>/dev/null); do
  [ -e "$c" ] || continue
  v=$(basename "$c" | sed -n 's/^libcupti\.so\.\([0-9][0-9]*\).*/\1/p')
  if [ -n "$v" ] && [ "$v" -ge 12 ]; then
    cp -L "$c" "$t/libcupti.so.$v" && cp -L "$c" "$t/libcupti.so.$v.0" && echo "gpu-host-nsys: CUPTI $c -> $t/libcupti.so.$v"
  fi
done
export NSYS=$t/nsys
"$NSYS" --version
