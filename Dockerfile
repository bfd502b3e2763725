# catdog as a Lambda container image on AWS's provided.al2023 base, for
# those with Docker (or Podman). `make image` builds the package this copies
# and, without any container engine, an OCI image of the same layout
# (docs/deploy.md, "A container image").
#
#   make image                        # target/image/x86_64/package (and the OCI image)
#   docker build --platform linux/amd64 -t catdog .
#
# arm64: make image ARCH=arm64, then
#   docker build --platform linux/arm64 --build-arg PACKAGE=target/image/arm64/package -t catdog .
FROM public.ecr.aws/lambda/provided:al2023
ARG PACKAGE=target/image/x86_64/package
# The base image's entrypoint runs /var/runtime/bootstrap; catdog loads the
# ONNX Runtime library from its own folder.
COPY ${PACKAGE}/bootstrap ${PACKAGE}/libonnxruntime.so* /var/runtime/
# Lambda may snapshot it (SnapStart): catdog runs its own hooks as well.
LABEL com.amazonaws.lambda.feature.snapstart="Allow"
CMD ["bootstrap"]
