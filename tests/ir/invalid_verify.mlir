// RUN: not verify %s 2>&1 | filecheck %s
// RUN: not parse-print %s 2>&1 | filecheck %s

// Well-formed text that breaks the IR's invariants: the verifier reports each
// finding at the op's line, naming the op.

module {
  func.func @types(%x: tensor<?x784xf32, "N">, %w: tensor<784x10xf32>, %v: tensor<3xf32>) -> (tensor<?x10xf32, "N">) {
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.matmul: result 0 has type tensor<?x12xf32, "N">, but the shape rule gives tensor<?x10xf32, "N">
    %0 = "dl.matmul"(%x, %w) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x12xf32, "N">
    // CHECK-NEXT: {{^}}    %0 = "dl.matmul"(%x, %w)
    // CHECK-NEXT: {{^    \^{16}$}}
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.add: shapes [784, 10] and [3] do not broadcast: dim 10 vs 3
    %1 = "dl.add"(%w, %v) : (tensor<784x10xf32>, tensor<3xf32>) -> tensor<784x10xf32>
    %i = "dl.iota"() {dtype = i64, shape = [3]} : () -> tensor<3xi64>
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.add: operands have different dtypes: f32 and i64
    %2 = "dl.add"(%v, %i) : (tensor<3xf32>, tensor<3xi64>) -> tensor<3xf32>
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.neg: takes 1 operand(s), got 2
    %3 = "dl.neg"(%v, %v) : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
    %ok = "dl.matmul"(%x, %w) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N">
    func.return %ok : tensor<?x10xf32, "N">
  }

  func.func @attributes(%x: tensor<2x3xf32>) -> () {
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.sum: unknown attribute 'axis' (allowed: axes, keepdims)
    %0 = "dl.sum"(%x) {axis = 1} : (tensor<2x3xf32>) -> tensor<2xf32>
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.sum: axis 2 is out of range for rank 2
    %1 = "dl.sum"(%x) {axes = [2]} : (tensor<2x3xf32>) -> tensor<2xf32>
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.sum: attribute 'keepdims' expects true or false, got 1
    %2 = "dl.sum"(%x) {keepdims = 1} : (tensor<2x3xf32>) -> tensor<f32>
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.reshape: missing required attribute 'shape'
    %3 = "dl.reshape"(%x) : (tensor<2x3xf32>) -> tensor<6xf32>
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:5: error: dl.cast: attribute 'dtype' expects a dtype, got 3
    %4 = "dl.cast"(%x) {dtype = 3} : (tensor<2x3xf32>) -> tensor<2x3xi32>
    func.return
  }

  // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:3: error: @inplace: inplace pair [0, "z"]: there is no parameter %z
  func.func @inplace(%w: tensor<2xf32>, %s: tensor<3xf32>) -> (tensor<2xf32>, tensor<3xf32>) attributes {inplace = [[0, "z"], [1, "w"], [2, "s"]]} {
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE - 1]]:3: error: @inplace: inplace pair [1, "w"]: output 1 has type tensor<3xf32>, but %w has type tensor<2xf32>
    // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE - 2]]:3: error: @inplace: inplace pair [2, "s"]: there is no output 2
    func.return %w, %s : tensor<2xf32>, tensor<3xf32>
  }

  // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:3: error: @bad_inplace: attribute 'inplace' must be a list of [output index, parameter name] pairs
  func.func @bad_inplace(%w: tensor<2xf32>) -> (tensor<2xf32>) attributes {inplace = [0, "w"]} {
    func.return %w : tensor<2xf32>
  }

  // CHECK: {{.*}}invalid_verify.mlir:[[# @LINE + 1]]:3: error: @numbered: parameter name '0' is not a valid IR name (a letter, '_', '$', '.' or '-' first)
  func.func @numbered(%0: tensor<2xf32>) -> (tensor<2xf32>) {
    func.return %0 : tensor<2xf32>
  }
}
// CHECK-NOT: error
