// RUN: dlc opt %s --passes canonicalize | filecheck %s
// RUN: dlc opt %s --passes canonicalize --pass-option canonicalize.finite-math=true | filecheck %s --check-prefix=FAST
// RUN: dlc opt %s --passes canonicalize --pass-stats 2>&1 | filecheck %s --check-prefix=STATS

// Canonicalization: each function exercises one pattern; the negative cases
// (a pattern that must not fire) keep their ops.

// x + (-0.0) -> x; the result keeps its shape, so a zero that broadcasts x
// up turns into broadcast_to(x).  x + (+0.0) is not x for x = -0.0: it stays,
// unless finite-math says the sign of zero does not matter.
// CHECK-LABEL: func.func @add_zero
// CHECK-NEXT:    %0 = "dl.broadcast_to"(%v) {shape = [4, 3]} : (tensor<3xf32>) -> tensor<4x3xf32>
// CHECK-NEXT:    %1 = "dl.constant"() {dtype = f32, shape = [], value = dense<0.0> : tensor<f64>}
// CHECK-NEXT:    %2 = "dl.add"(%x, %1)
// CHECK-NEXT:    func.return %x, %0, %2 : tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>
// FAST-LABEL:  func.func @add_zero
// FAST-NEXT:     %0 = "dl.broadcast_to"(%v)
// FAST-NEXT:     func.return %x, %0, %x
func.func @add_zero(%x: tensor<4x3xf32>, %v: tensor<3xf32>) -> (tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>) {
  %0 = "dl.constant"() {dtype = f32, shape = [], value = -0.0} : () -> tensor<f32>
  %1 = "dl.add"(%x, %0) : (tensor<4x3xf32>, tensor<f32>) -> tensor<4x3xf32>
  %2 = "dl.constant"() {dtype = f32, shape = [4, 3], value = -0.0} : () -> tensor<4x3xf32>
  %3 = "dl.add"(%2, %v) : (tensor<4x3xf32>, tensor<3xf32>) -> tensor<4x3xf32>
  %4 = "dl.constant"() {dtype = f32, shape = [], value = 0.0} : () -> tensor<f32>
  %5 = "dl.add"(%x, %4) : (tensor<4x3xf32>, tensor<f32>) -> tensor<4x3xf32>
  func.return %1, %3, %5 : tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>
}

// x * 1, 1 * x, x / 1, x - 0 -> x;  x * -1 -> neg(x)
// CHECK-LABEL: func.func @identities
// CHECK-NEXT:    %0 = "dl.neg"(%x) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
// CHECK-NEXT:    func.return %x, %x, %x, %0 :
func.func @identities(%x: tensor<?x3xf32, "N">) -> (tensor<?x3xf32, "N">, tensor<?x3xf32, "N">, tensor<?x3xf32, "N">, tensor<?x3xf32, "N">) {
  %one = "dl.constant"() {dtype = f32, shape = [], value = 1.0} : () -> tensor<f32>
  %zero = "dl.constant"() {dtype = f32, shape = [], value = 0.0} : () -> tensor<f32>
  %m1 = "dl.constant"() {dtype = f32, shape = [], value = -1.0} : () -> tensor<f32>
  %0 = "dl.mul"(%one, %x) : (tensor<f32>, tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
  %1 = "dl.div"(%0, %one) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
  %2 = "dl.sub"(%x, %zero) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
  %3 = "dl.mul"(%x, %m1) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
  func.return %0, %1, %2, %3 : tensor<?x3xf32, "N">, tensor<?x3xf32, "N">, tensor<?x3xf32, "N">, tensor<?x3xf32, "N">
}

// Floats: x * 0 and x - x stay (NaN and inf), unless finite-math is on.
// Integers: both always fold to 0.
// CHECK-LABEL: func.func @nan_care
// CHECK:         "dl.mul"(%x, %0)
// CHECK:         "dl.sub"(%x, %x)
// CHECK-NOT:     "dl.mul"(%i
// CHECK-NOT:     "dl.sub"(%i
// FAST-LABEL:  func.func @nan_care
// FAST-NOT:      "dl.mul"
// FAST-NOT:      "dl.sub"
// FAST:          func.return
func.func @nan_care(%x: tensor<3xf32>, %i: tensor<3xi32>) -> (tensor<3xf32>, tensor<3xf32>, tensor<3xi32>, tensor<3xi32>) {
  %zero = "dl.constant"() {dtype = f32, shape = [], value = 0.0} : () -> tensor<f32>
  %izero = "dl.constant"() {dtype = i32, shape = [], value = 0} : () -> tensor<i32>
  %0 = "dl.mul"(%x, %zero) : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>
  %1 = "dl.sub"(%x, %x) : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
  %2 = "dl.mul"(%i, %izero) : (tensor<3xi32>, tensor<i32>) -> tensor<3xi32>
  %3 = "dl.sub"(%i, %i) : (tensor<3xi32>, tensor<3xi32>) -> tensor<3xi32>
  func.return %0, %1, %2, %3 : tensor<3xf32>, tensor<3xf32>, tensor<3xi32>, tensor<3xi32>
}

// neg(neg x) -> x;  log(exp x) and exp(log x) stay (exp(100) = inf, log(-1) = nan)
// CHECK-LABEL: func.func @inverses
// CHECK-NEXT:    %0 = "dl.exp"(%x)
// CHECK-NEXT:    %1 = "dl.log"(%0)
// CHECK-NEXT:    %2 = "dl.log"(%x)
// CHECK-NEXT:    %3 = "dl.exp"(%2)
// CHECK-NEXT:    func.return %x, %1, %3
// FAST-LABEL:  func.func @inverses
// FAST-NEXT:     func.return %x, %x, %x
func.func @inverses(%x: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) {
  %0 = "dl.neg"(%x) : (tensor<3xf32>) -> tensor<3xf32>
  %1 = "dl.neg"(%0) : (tensor<3xf32>) -> tensor<3xf32>
  %2 = "dl.exp"(%x) : (tensor<3xf32>) -> tensor<3xf32>
  %3 = "dl.log"(%2) : (tensor<3xf32>) -> tensor<3xf32>
  %4 = "dl.log"(%x) : (tensor<3xf32>) -> tensor<3xf32>
  %5 = "dl.exp"(%4) : (tensor<3xf32>) -> tensor<3xf32>
  func.return %1, %3, %5 : tensor<3xf32>, tensor<3xf32>, tensor<3xf32>
}

// transpose(transpose(x)) composes; an identity permutation disappears.
// CHECK-LABEL: func.func @transposes
// CHECK-NEXT:    %0 = "dl.transpose"(%x) {perm = [2, 0, 1]} : (tensor<2x3x4xf32>) -> tensor<4x2x3xf32>
// CHECK-NEXT:    func.return %x, %0
func.func @transposes(%x: tensor<2x3x4xf32>) -> (tensor<2x3x4xf32>, tensor<4x2x3xf32>) {
  %0 = "dl.transpose"(%x) {perm = [1, 0, 2]} : (tensor<2x3x4xf32>) -> tensor<3x2x4xf32>
  %1 = "dl.transpose"(%0) {perm = [1, 0, 2]} : (tensor<3x2x4xf32>) -> tensor<2x3x4xf32>
  %2 = "dl.transpose"(%0) {perm = [2, 1, 0]} : (tensor<3x2x4xf32>) -> tensor<4x2x3xf32>
  func.return %1, %2 : tensor<2x3x4xf32>, tensor<4x2x3xf32>
}

// reshape(reshape x) -> one reshape; a reshape (or broadcast) to the same shape vanishes;
// a sum over size-1 axes is a reshape.
// CHECK-LABEL: func.func @layout
// CHECK-NEXT:    %0 = "dl.reshape"(%x) {shape = [3, "N"]} : (tensor<?x3xf32, "N">) -> tensor<3x?xf32, "N">
// CHECK-NEXT:    %1 = "dl.reshape"(%y) {shape = ["N"]} : (tensor<?x1xf32, "N">) -> tensor<?xf32, "N">
// CHECK-NEXT:    func.return %0, %x, %1
func.func @layout(%x: tensor<?x3xf32, "N">, %y: tensor<?x1xf32, "N">) -> (tensor<3x?xf32, "N">, tensor<?x3xf32, "N">, tensor<?xf32, "N">) {
  %0 = "dl.reshape"(%x) {shape = ["N", 3, 1]} : (tensor<?x3xf32, "N">) -> tensor<?x3x1xf32, "N">
  %1 = "dl.reshape"(%0) {shape = [3, "N"]} : (tensor<?x3x1xf32, "N">) -> tensor<3x?xf32, "N">
  %2 = "dl.reshape"(%0) {shape = ["N", 3]} : (tensor<?x3x1xf32, "N">) -> tensor<?x3xf32, "N">
  %3 = "dl.broadcast_to"(%2) {shape = ["N", 3]} : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
  %4 = "dl.sum"(%y) {axes = [1], keepdims = false} : (tensor<?x1xf32, "N">) -> tensor<?xf32, "N">
  func.return %1, %3, %4 : tensor<3x?xf32, "N">, tensor<?x3xf32, "N">, tensor<?xf32, "N">
}

// A sum over an axis of another size stays.
// CHECK-LABEL: func.func @real_sum
// CHECK-NEXT:    "dl.sum"(%x)
func.func @real_sum(%x: tensor<?x3xf32, "N">) -> (tensor<?xf32, "N">) {
  %0 = "dl.sum"(%x) {axes = [1], keepdims = false} : (tensor<?x3xf32, "N">) -> tensor<?xf32, "N">
  func.return %0 : tensor<?xf32, "N">
}

// Constant folding (static shapes), a splat over a symbolic shape, dim_size of a static dim,
// cast to the same dtype, select on a constant condition.
// CHECK-LABEL: func.func @folding
// CHECK-NEXT:    %0 = "dl.constant"() {dtype = f32, shape = [2], value = dense<[4.0, 6.0]> : tensor<2xf32>} : () -> tensor<2xf32>
// CHECK-NEXT:    %1 = "dl.constant"() {dtype = f32, shape = ["N", 3], value = dense<2.0> : tensor<f64>} : () -> tensor<?x3xf32, "N">
// CHECK-NEXT:    %2 = "dl.constant"() {dtype = i64, shape = [], value = dense<3> : tensor<i64>} : () -> tensor<i64>
// CHECK-NEXT:    func.return %0, %1, %2, %x, %x
func.func @folding(%x: tensor<?x3xf32, "N">) -> (tensor<2xf32>, tensor<?x3xf32, "N">, tensor<i64>, tensor<?x3xf32, "N">, tensor<?x3xf32, "N">) {
  %a = "dl.constant"() {dtype = f32, shape = [2], value = dense<[1.0, 2.0]> : tensor<2xf32>} : () -> tensor<2xf32>
  %b = "dl.constant"() {dtype = f32, shape = [2], value = dense<[3.0, 4.0]> : tensor<2xf32>} : () -> tensor<2xf32>
  %0 = "dl.add"(%a, %b) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  %one = "dl.constant"() {dtype = f32, shape = [], value = 1.0} : () -> tensor<f32>
  %two = "dl.add"(%one, %one) : (tensor<f32>, tensor<f32>) -> tensor<f32>
  %1 = "dl.broadcast_to"(%two) {shape = ["N", 3]} : (tensor<f32>) -> tensor<?x3xf32, "N">
  %2 = "dl.dim_size"(%x) {axis = 1, dtype = i64} : (tensor<?x3xf32, "N">) -> tensor<i64>
  %3 = "dl.cast"(%x) {dtype = f32} : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
  %t = "dl.constant"() {dtype = i1, shape = [], value = true} : () -> tensor<i1>
  %4 = "dl.select"(%t, %x, %one) : (tensor<i1>, tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
  func.return %0, %1, %2, %3, %4 : tensor<2xf32>, tensor<?x3xf32, "N">, tensor<i64>, tensor<?x3xf32, "N">, tensor<?x3xf32, "N">
}

// select(y > 0, max_pool2d_grad(y, dy), +0.0) -> max_pool2d_grad(y, select(max_pool2d(y) > 0, dy, 0)):
// relu's backward mask moves onto the pooled gradient.  With -0.0 as the other branch
// it stays (the scatter's zeros are +0.0).
// CHECK-LABEL: func.func @mask_before_max_pool_grad
// CHECK:         %[[P:.*]] = "dl.max_pool2d"(%y) {padding = [0, 0, 0, 0], pool_size = [2, 2], strides = [2, 2]}
// CHECK:         %[[M:.*]] = "dl.gt"(%[[P]],
// CHECK:         %[[D:.*]] = "dl.select"(%[[M]], %dy,
// CHECK:         %[[G:.*]] = "dl.max_pool2d_grad"(%y, %[[D]])
// CHECK:         %[[S:.*]] = "dl.select"(
// CHECK-NEXT:    func.return %[[G]], %[[S]]
func.func @mask_before_max_pool_grad(%y: tensor<?x4x4x2xf32, "N">, %dy: tensor<?x2x2x2xf32, "N">) -> (tensor<?x4x4x2xf32, "N">, tensor<?x4x4x2xf32, "N">) {
  %z = "dl.constant"() {dtype = f32, shape = [], value = 0.0} : () -> tensor<f32>
  %nz = "dl.constant"() {dtype = f32, shape = [], value = -0.0} : () -> tensor<f32>
  %g = "dl.max_pool2d_grad"(%y, %dy) {padding = [0, 0, 0, 0], pool_size = [2, 2], strides = [2, 2]} : (tensor<?x4x4x2xf32, "N">, tensor<?x2x2x2xf32, "N">) -> tensor<?x4x4x2xf32, "N">
  %m = "dl.gt"(%y, %z) : (tensor<?x4x4x2xf32, "N">, tensor<f32>) -> tensor<?x4x4x2xi1, "N">
  %0 = "dl.select"(%m, %g, %z) : (tensor<?x4x4x2xi1, "N">, tensor<?x4x4x2xf32, "N">, tensor<f32>) -> tensor<?x4x4x2xf32, "N">
  %1 = "dl.select"(%m, %g, %nz) : (tensor<?x4x4x2xi1, "N">, tensor<?x4x4x2xf32, "N">, tensor<f32>) -> tensor<?x4x4x2xf32, "N">
  func.return %0, %1 : tensor<?x4x4x2xf32, "N">, tensor<?x4x4x2xf32, "N">
}

// dim_size of a symbolic dim is read at run time: it stays.
// CHECK-LABEL: func.func @symbolic_dim
// CHECK-NEXT:    "dl.dim_size"(%x) {axis = 0, dtype = i64}
func.func @symbolic_dim(%x: tensor<?x3xf32, "N">) -> (tensor<i64>) {
  %0 = "dl.dim_size"(%x) {axis = 0, dtype = i64} : (tensor<?x3xf32, "N">) -> tensor<i64>
  func.return %0 : tensor<i64>
}

// STATS:      'canonicalize'
// STATS-DAG:  (S) {{ *}}2 add-zero
// STATS-DAG:  (S) {{ *}}1 sub-zero
// STATS-DAG:  (S) {{ *}}1 mul-minus-one
// STATS-DAG:  (S) {{ *}}1 neg-neg
// STATS-DAG:  (S) {{ *}}2 transpose-transpose
// STATS-DAG:  (S) {{ *}}1 dim-size-static
// STATS-DAG:  (S) {{ *}}1 mask-before-max-pool-grad
